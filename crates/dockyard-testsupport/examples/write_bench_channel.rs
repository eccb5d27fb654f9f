//! Write the conda benchmark channel: 50 `linux-64` `.conda` packages
//! `benchNN 1.0` of realistic sizes (0.5–4 MB each, ~94 MB in all, half
//! pseudo-random and half text so they compress partly), each depending on
//! the one before it in a tree, plus `bench25 1.1` — the one-package change
//! `bench/conda.sh` rebuilds with.
//! `cargo run --release -p dockyard-testsupport --example write_bench_channel -- DIR`

use dockyard_testsupport::conda_channel::{Channel, PackageFile, PackageSpec};
use dockyard_testsupport::registry::pseudo_random;

const PACKAGES: usize = 50;

fn package(i: usize, version: &str) -> PackageSpec {
    let mut p = PackageSpec::new(&format!("bench{i:02}"), version);
    if i > 0 {
        p.depends.push(format!("bench{:02}", (i - 1) / 2));
    }
    // Sizes cycle through 0.5, 1, 2 and 4 MB.
    let size = (512 * 1024) << (i % 4);
    let seed = (i as u64) * 1000 + version.len() as u64 + u64::from(version.ends_with(".1"));
    let random = pseudo_random(seed, size / 2);
    let line = format!("bench{i:02} {version}: a line of text that compresses well\n");
    let text = line.repeat(size / 2 / line.len() + 1);
    p.files = vec![
        PackageFile::binary(&format!("lib/libbench{i:02}.so"), &random),
        PackageFile::text(&format!("share/bench{i:02}/data.txt"), &text),
        PackageFile::text(
            &format!("bin/bench{i:02}"),
            &format!("#!/bin/sh\necho bench{i:02} {version}\n"),
        )
        .executable(),
    ];
    p
}

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: write_bench_channel DIR");
        std::process::exit(1);
    };
    let dir = std::path::PathBuf::from(dir);
    if dir.exists() {
        eprintln!("{}: exists; remove it first", dir.display());
        std::process::exit(1);
    }
    let mut channel = Channel::new(&dir);
    for i in 0..PACKAGES {
        channel.add(&package(i, "1.0"));
    }
    channel.add(&package(25, "1.1"));
    channel.index();
    println!("{}", channel.url());
}
