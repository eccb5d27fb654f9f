//! Random access into an uncompressed tar file: member name → byte range.
//! A compressed archive is first decompressed to a temporary file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::layer::BlobSource;
use crate::media::Compression;

#[derive(Clone, Debug)]
enum Member {
    File { offset: u64, len: u64 },
    Link(String),
}

pub struct TarIndex {
    /// The archive as the user named it (for messages).
    pub path: PathBuf,
    /// The uncompressed tar we read from.
    data_path: Arc<PathBuf>,
    keep: Option<Arc<tempfile::TempPath>>,
    members: HashMap<String, Member>,
}

/// `./a//b/../c` → `a/c`: a member name as a plain relative path.
pub(crate) fn clean_name(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::InvalidArchive {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl TarIndex {
    pub fn open(path: &Path) -> Result<TarIndex> {
        let file = File::open(path).at(path)?;
        let mut reader = BufReader::new(file);
        let compression = Compression::sniff(reader.fill_buf().at(path)?);
        let (data_path, keep) = if compression == Compression::None {
            (Arc::new(path.to_path_buf()), None)
        } else {
            // Decompress next to nothing of the user's: the system temp dir.
            let mut temp = tempfile::Builder::new()
                .prefix("dockyard-archive-")
                .tempfile()
                .at(std::env::temp_dir())?;
            let mut plain = crate::compress::decompress(reader, compression).at(path)?;
            io::copy(&mut plain, temp.as_file_mut())
                .map_err(|e| invalid(path, format!("cannot decompress: {e}")))?;
            let tp = temp.into_temp_path();
            (Arc::new(tp.to_path_buf()), Some(Arc::new(tp)))
        };
        let file_len = std::fs::metadata(data_path.as_path()).at(path)?.len();
        let file = File::open(data_path.as_path()).at(path)?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        let entries = archive
            .entries_with_seek()
            .map_err(|_| invalid(path, "not a tar file"))?;
        let mut count = 0usize;
        for entry in entries {
            let entry = entry.map_err(|e| {
                if count == 0 {
                    invalid(path, "not a tar file")
                } else {
                    invalid(
                        path,
                        format!(
                            "corrupt or truncated tar after {count} members: {}",
                            printable(&e.to_string())
                        ),
                    )
                }
            })?;
            count += 1;
            let name = String::from_utf8_lossy(&entry.path_bytes()).to_string();
            let name = clean_name(&name);
            let header = entry.header();
            let kind = header.entry_type();
            let offset = entry.raw_file_position();
            let len = entry.size();
            if kind.is_file() || kind == tar::EntryType::Continuous {
                if offset + len > file_len {
                    return Err(invalid(
                        path,
                        format!("truncated: member {name} needs {len} bytes at offset {offset}, the file has {file_len}"),
                    ));
                }
                members.insert(name, Member::File { offset, len });
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).to_string())
                    .unwrap_or_default();
                let resolved = if kind.is_symlink() {
                    let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    clean_name(&format!("{dir}/{target}"))
                } else {
                    clean_name(&target)
                };
                members.insert(name, Member::Link(resolved));
            }
        }
        if count == 0 {
            return Err(invalid(path, "empty or not a tar file"));
        }
        Ok(TarIndex {
            path: path.to_path_buf(),
            data_path,
            keep,
            members,
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.member(name).is_some()
    }

    fn member(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = clean_name(name);
        for _ in 0..16 {
            match self.members.get(&name)? {
                Member::File { offset, len } => return Some((*offset, *len)),
                Member::Link(t) => name = t.clone(),
            }
        }
        None
    }

    /// The bytes of a member, as a blob source.
    pub fn source(&self, name: &str) -> Result<BlobSource> {
        let (offset, len) = self
            .member(name)
            .ok_or_else(|| invalid(&self.path, format!("member {name} is missing")))?;
        Ok(BlobSource::File {
            path: Arc::clone(&self.data_path),
            offset,
            len,
            keep: self.keep.clone(),
            store_blob: false,
        })
    }

    pub fn read(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        self.source(name)?.read_all(limit)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.members.keys()
    }
}

/// An error text safe to print: no control characters, bounded length
/// (tar errors may quote raw header bytes).
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(160)
        .collect()
}
