//! Which repositories of a registry are known to hold a blob: recorded on
//! pull and push, used to mount instead of upload.

use dockyard_image::{Digest, Store};
use serde_json::{json, Value};

use crate::error::Result;

const TABLE: &str = "blob-sources";

/// Remember that `registry/repo` holds these blobs.
pub fn record_blob_source<'a>(
    store: &Store,
    registry: &str,
    repo: &str,
    digests: impl Iterator<Item = &'a Digest>,
) -> Result<()> {
    let table = store.side_table(TABLE);
    let entry = format!("{registry}/{repo}");
    for d in digests {
        // An unreadable record (a hint cut short by a crash) is rewritten.
        let mut list = table
            .get(d.hex())
            .ok()
            .flatten()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        if !list.iter().any(|v| v.as_str() == Some(&entry)) {
            list.push(json!(entry));
            // Keep the record small: the newest few repositories.
            if list.len() > 8 {
                list.remove(0);
            }
            table.put_hint(d.hex(), &Value::Array(list))?;
        }
    }
    Ok(())
}

/// Repositories of `registry` (other than `except`) known to hold `digest`.
pub fn known_sources(store: &Store, registry: &str, digest: &Digest, except: &str) -> Vec<String> {
    let prefix = format!("{registry}/");
    store
        .side_table(TABLE)
        .get(digest.hex())
        .ok()
        .flatten()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|s| s.strip_prefix(&prefix))
        .filter(|r| *r != except)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_recorded_and_a_cut_short_record_is_rewritten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        record_blob_source(&store, "reg:5000", "team/app", [&a, &b].into_iter()).expect("record");
        assert_eq!(
            known_sources(&store, "reg:5000", &a, "other"),
            vec!["team/app"]
        );
        assert!(known_sources(&store, "reg:5000", &a, "team/app").is_empty());
        assert!(known_sources(&store, "elsewhere", &b, "other").is_empty());
        // What a crash may leave of a hint: an empty file. It reads as no
        // record, and the next push writes it again.
        let path = dir.path().join("dockyard").join(TABLE).join(a.hex());
        std::fs::write(&path, b"").expect("truncate");
        assert!(known_sources(&store, "reg:5000", &a, "other").is_empty());
        record_blob_source(&store, "reg:5000", "team/web", [&a].into_iter()).expect("record");
        assert_eq!(
            known_sources(&store, "reg:5000", &a, "other"),
            vec!["team/web"]
        );
    }
}
