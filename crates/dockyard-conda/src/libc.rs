//! The C library of a base image, for the `__glibc` virtual package the
//! solve assumes: read from the base's layers (headers, and the bytes of
//! `libc.so.6` only), newest layer last. glibc before 2.34 names its files
//! `libc-2.NN.so`; later ones are read for their `GLIBC_2.NN` symbol
//! versions; a musl base has no glibc at all.

use std::io::Read;

use dockyard::{Digest, Image, Store};
use serde_json::{json, Value};

/// The store's side table of what `detect` found, by the base's layers:
/// a rebuild on the same base reads none of its layers again.
const DETECTED_TABLE: &str = "conda-base-libc";

/// What a base image's C library is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BaseLibc {
    /// glibc of this version (`2.36`).
    Glibc(String),
    Musl,
}

/// The largest libc.so.6 read for its symbol versions.
const LIBC_LIMIT: u64 = 32 << 20;

/// `libc-2.31.so` / `ld-2.31.so` → `2.31`.
fn version_in_name(name: &str) -> Option<String> {
    let stem = name
        .strip_prefix("libc-")
        .or_else(|| name.strip_prefix("ld-"))?
        .strip_suffix(".so")?;
    let (major, minor) = stem.split_once('.')?;
    (major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok()).then(|| stem.to_string())
}

/// The newest `GLIBC_2.NN` symbol version a libc.so.6 defines.
fn version_in_binary(bytes: &[u8]) -> Option<String> {
    let tag = b"GLIBC_2.";
    let mut best: Option<(u32, u32)> = None;
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(tag.len()).position(|w| w == tag) {
        let start = i + at + tag.len();
        let digits: Vec<u8> = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .copied()
            .collect();
        let text = String::from_utf8_lossy(&digits);
        let minor = text.split('.').next().and_then(|m| m.parse::<u32>().ok());
        if let Some(minor) = minor {
            if best.map(|b| (2, minor) > b).unwrap_or(true) {
                best = Some((2, minor));
            }
        }
        i = start;
    }
    best.map(|(a, b)| format!("{a}.{b}"))
}

fn is_lib_dir(path: &str) -> bool {
    let path = path.trim_start_matches("./").trim_start_matches('/');
    path.starts_with("lib/")
        || path.starts_with("lib64/")
        || path.starts_with("usr/lib/")
        || path.starts_with("usr/lib64/")
}

/// `detect`, remembered in `store` by the base's diff_ids.
pub fn detect_cached(base: &Image, store: &Store) -> Option<BaseLibc> {
    if base.has_remote_layers() {
        return None;
    }
    let ids: String = base
        .layers()
        .iter()
        .map(|l| format!("{}\n", l.diff_id()))
        .collect();
    let key = Digest::sha256_of(ids.as_bytes()).hex().to_string();
    let table = store.side_table(DETECTED_TABLE);
    if let Ok(Some(v)) = table.get(&key) {
        return match (v["libc"].as_str(), v["version"].as_str()) {
            (Some("glibc"), Some(version)) => Some(BaseLibc::Glibc(version.to_string())),
            (Some("musl"), _) => Some(BaseLibc::Musl),
            _ => None,
        };
    }
    let found = detect(base);
    let record: Value = match &found {
        Some(BaseLibc::Glibc(version)) => json!({"libc": "glibc", "version": version}),
        Some(BaseLibc::Musl) => json!({"libc": "musl"}),
        None => json!({"libc": "none"}),
    };
    // A memo that cannot be written is only a slower next build.
    let _ = table.put(&key, &record);
    found
}

/// The C library the base's layers hold, if they say; `None` for a base
/// with no libc (scratch, busybox) or layers not read (still in a
/// registry: they are not downloaded for this).
pub fn detect(base: &Image) -> Option<BaseLibc> {
    if base.has_remote_layers() {
        return None;
    }
    let mut found = None;
    for layer in base.layers() {
        let Ok(reader) = layer.open_uncompressed() else {
            return None;
        };
        let mut archive = tar::Archive::new(reader);
        let Ok(entries) = archive.entries() else {
            return None;
        };
        for entry in entries {
            let Ok(mut entry) = entry else { break };
            let Ok(path) = entry.path().map(|p| p.to_string_lossy().to_string()) else {
                continue;
            };
            if !is_lib_dir(&path) {
                continue;
            }
            let name = path.rsplit('/').next().unwrap_or("");
            if name.starts_with("ld-musl-") {
                found = Some(BaseLibc::Musl);
            } else if let Some(v) = version_in_name(name) {
                found = Some(BaseLibc::Glibc(v));
            } else if name == "libc.so.6"
                && entry.header().entry_type().is_file()
                && entry.size() <= LIBC_LIMIT
            {
                let mut bytes = Vec::new();
                if entry.read_to_end(&mut bytes).is_ok() {
                    if let Some(v) = version_in_binary(&bytes) {
                        found = Some(BaseLibc::Glibc(v));
                    }
                }
            }
        }
    }
    found
}

/// The default virtual packages with `__glibc` set from what the base holds.
pub fn virtual_packages_for(defaults: Vec<String>, libc: Option<&BaseLibc>) -> Vec<String> {
    match libc {
        None => defaults,
        Some(BaseLibc::Musl) => defaults
            .into_iter()
            .filter(|v| !v.starts_with("__glibc="))
            .collect(),
        Some(BaseLibc::Glibc(version)) => defaults
            .into_iter()
            .map(|v| {
                if v.starts_with("__glibc=") {
                    format!("__glibc={version}")
                } else {
                    v
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_names_and_symbol_tables() {
        assert_eq!(version_in_name("libc-2.31.so").as_deref(), Some("2.31"));
        assert_eq!(version_in_name("ld-2.17.so").as_deref(), Some("2.17"));
        assert_eq!(version_in_name("libc.so.6"), None);
        assert_eq!(version_in_name("libc-x.so"), None);
        let table = b"\0GLIBC_2.2.5\0GLIBC_2.36\0GLIBC_2.4\0GLIBC_PRIVATE\0";
        assert_eq!(version_in_binary(table).as_deref(), Some("2.36"));
        assert_eq!(version_in_binary(b"no versions here"), None);
    }

    #[test]
    fn defaults_follow_the_base() {
        let d = vec!["__unix".to_string(), "__glibc=2.28".to_string()];
        assert_eq!(
            virtual_packages_for(d.clone(), Some(&BaseLibc::Glibc("2.36".into()))),
            ["__unix", "__glibc=2.36"]
        );
        assert_eq!(
            virtual_packages_for(d.clone(), Some(&BaseLibc::Musl)),
            ["__unix"]
        );
        assert_eq!(virtual_packages_for(d.clone(), None), d);
    }
}
