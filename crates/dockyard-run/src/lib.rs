//! dockyard-run: turn an image into a root filesystem safely, and run
//! commands in it without a daemon.

pub mod export;
pub mod run;

pub use export::{export_rootfs, export_rootfs_with, ExportOptions};
pub use run::{
    check_platform, foreground_child, interrupt_foreground, pick_runtime, prepare_rootfs,
    process_for, prune_rootfs_cache, resolve_mounts, run_command, run_in_rootfs, Mount, Network,
    Process, RunError, RunOptions, RunOutput, Runtime,
};
