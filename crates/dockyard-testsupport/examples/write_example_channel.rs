//! Write the example conda channel (the test channel of
//! `dockyard_testsupport::conda_channel`) into a folder:
//! `cargo run -p dockyard-testsupport --example write_example_channel -- examples/conda/channel`.
//! The repository ships its output; a test checks that they agree.

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: write_example_channel DIR");
        std::process::exit(1);
    };
    let dir = std::path::PathBuf::from(dir);
    if dir.exists() {
        eprintln!("{}: exists; remove it first", dir.display());
        std::process::exit(1);
    }
    let channel = dockyard_testsupport::conda_channel::example_channel(&dir);
    println!("{}", channel.url());
}
