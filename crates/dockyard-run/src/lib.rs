//! dockyard-run: turn an image into a root filesystem, safely.

pub mod export;

pub use export::{export_rootfs, export_rootfs_with, ExportOptions};
