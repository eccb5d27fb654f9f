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
        let mut list = table
            .get(d.hex())?
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        if !list.iter().any(|v| v.as_str() == Some(&entry)) {
            list.push(json!(entry));
            // Keep the record small: the newest few repositories.
            if list.len() > 8 {
                list.remove(0);
            }
            table.put(d.hex(), &Value::Array(list))?;
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
