//! Reproducible tar writing (`writer`) and the layer builder on top of it
//! (`builder`): entries sorted by path, fixed mtime, uid/gid 0, PAX headers
//! only where ustar cannot hold a value.

pub mod builder;
pub mod writer;

pub use builder::{LayerBuilder, LayerOptions};
pub use writer::{EntryHeader, EntryKind, TarWriter};

/// Normalise a path inside an image: no leading `/`, no `.` or empty
/// components; `..` is refused. Returns the bytes of `a/b/c` (empty = root).
pub fn normalize_image_path(path: &[u8]) -> Result<Vec<u8>, String> {
    let mut out: Vec<&[u8]> = Vec::new();
    for comp in path.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("'..' is not allowed in a path inside the image".into()),
            c => out.push(c),
        }
    }
    Ok(out.join(&b'/'))
}
