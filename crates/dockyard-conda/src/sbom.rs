//! An SPDX 2.3 JSON document listing every package of the environment:
//! name, version, build, channel, sha256, license, download location.

use rattler_conda_types::RepoDataRecord;
use serde_json::{json, Value};

/// Where the SBOM goes inside the image, below the prefix.
pub const SBOM_PATH: &str = "conda-meta/sbom.spdx.json";

/// SPDX ids allow letters, digits, `.` and `-`.
fn spdx_id(name: &str, version: &str, build: &str) -> String {
    let raw = format!("SPDXRef-Package-{name}-{version}-{build}");
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The SBOM of `records` (sorted by name), created at `created`
/// (RFC 3339), named after the environment and identified by `identity`
/// (the spec's and the lock's hashes: the same environment, the same
/// document).
pub fn spdx(name: &str, identity: &str, created: &str, records: &[RepoDataRecord]) -> Value {
    let mut records: Vec<&RepoDataRecord> = records.iter().collect();
    records.sort_by(|a, b| {
        a.package_record
            .name
            .as_normalized()
            .cmp(b.package_record.name.as_normalized())
    });
    let packages: Vec<Value> = records
        .iter()
        .map(|r| {
            let p = &r.package_record;
            let (n, v, b) = (
                p.name.as_normalized(),
                p.version.to_string(),
                p.build.to_string(),
            );
            let channel = r.channel.clone().unwrap_or_default();
            let mut pkg = json!({
                "SPDXID": spdx_id(n, &v, &b),
                "name": n,
                "versionInfo": v,
                "downloadLocation": r.url.to_string(),
                "filesAnalyzed": false,
                "licenseConcluded": "NOASSERTION",
                "licenseDeclared": p.license.clone().unwrap_or_else(|| "NOASSERTION".into()),
                "copyrightText": "NOASSERTION",
                "comment": format!("conda package {n} {v} {b} from {channel}"),
                "externalRefs": [{
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": format!("pkg:conda/{n}@{v}?build={b}&subdir={}", p.subdir),
                }],
            });
            if let Some(sha) = p.sha256 {
                pkg["checksums"] =
                    json!([{"algorithm": "SHA256", "checksumValue": hex::encode(sha)}]);
            }
            pkg
        })
        .collect();
    let described: Vec<Value> = packages.iter().map(|p| p["SPDXID"].clone()).collect();
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": format!("https://spdx.org/spdxdocs/dockyard-conda-{name}-{identity}"),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: dockyard-{}", env!("CARGO_PKG_VERSION"))],
        },
        "documentDescribes": described,
        "packages": packages,
    })
}
