//! `os/architecture[/variant]`, normalised and matched the way containerd
//! does it, so `linux/x86_64` finds an `amd64` image and `linux/arm64`
//! finds one whose descriptor says `arm64/v8` (or no variant at all).

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this machine, in Go's naming (amd64, arm64, …).
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: if architecture == "arm64" {
                Some("v8".into())
            } else {
                None
            },
        }
    }

    /// The platform an image config names (`os`, `architecture`,
    /// `variant`); `None` when it names no os or architecture.
    pub fn from_config(config: &serde_json::Value) -> Option<Platform> {
        let text = |k: &str| config.get(k).and_then(|v| v.as_str()).map(str::to_string);
        Some(Platform {
            os: text("os")?,
            architecture: text("architecture")?,
            variant: text("variant").filter(|v| !v.is_empty()),
        })
    }

    /// The canonical spelling: lower case, Go's architecture names, and the
    /// default variant made explicit (`arm64` → `arm64/v8`, `arm` →
    /// `arm/v7`, `amd64/v1` → `amd64`), as containerd normalises.
    pub fn normalized(&self) -> Platform {
        let os = match self.os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_string(),
            other => other.to_string(),
        };
        let arch = self.architecture.to_ascii_lowercase();
        let variant = self
            .variant
            .as_deref()
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let (architecture, variant) = match arch.as_str() {
            "i386" | "i686" | "386" => ("386".to_string(), String::new()),
            "x86_64" | "x86-64" | "amd64" => (
                "amd64".to_string(),
                if variant == "v1" {
                    String::new()
                } else {
                    variant
                },
            ),
            "aarch64" | "arm64" => (
                "arm64".to_string(),
                match variant.as_str() {
                    "" | "8" | "v8" | "v8.0" => "v8".to_string(),
                    "9" | "9.0" | "v9.0" => "v9".to_string(),
                    _ => variant,
                },
            ),
            "armhf" => ("arm".to_string(), "v7".to_string()),
            "armel" => ("arm".to_string(), "v6".to_string()),
            "arm" => (
                "arm".to_string(),
                match variant.as_str() {
                    "" | "7" => "v7".to_string(),
                    "5" | "6" | "8" => format!("v{variant}"),
                    _ => variant,
                },
            ),
            _ => (arch, variant),
        };
        Platform {
            os,
            architecture,
            variant: Some(variant).filter(|v| !v.is_empty()),
        }
    }

    /// How well an image built for `candidate` serves a request for `self`:
    /// `None` when it cannot run, else a rank (0 = exact; higher = an older
    /// variant that still runs, e.g. `arm/v6` for `arm/v7`).
    pub fn match_rank(&self, candidate: &Platform) -> Option<u32> {
        let want = self.normalized();
        let have = candidate.normalized();
        if want.os != have.os || want.architecture != have.architecture {
            return None;
        }
        if want.variant == have.variant {
            return Some(0);
        }
        // Older variants of the same architecture still run (containerd's
        // arm and arm64 compatibility); newer ones do not.
        let number = |v: &Option<String>| -> Option<u32> {
            v.as_deref()?
                .strip_prefix('v')?
                .split('.')
                .next()?
                .parse()
                .ok()
        };
        // A plain amd64 image is the v1 baseline every amd64 CPU runs.
        let amd64 = want.architecture == "amd64";
        let level = |v: &Option<String>| {
            if amd64 && v.is_none() {
                Some(1)
            } else {
                number(v)
            }
        };
        match (
            want.architecture.as_str(),
            level(&want.variant),
            level(&have.variant),
        ) {
            ("arm" | "arm64" | "amd64", Some(w), Some(h)) if h < w => Some(w - h),
            _ => None,
        }
    }

    /// True when an image for `candidate` runs where `self` is wanted.
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.match_rank(candidate).is_some()
    }
}

impl FromStr for Platform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Platform, Error> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(Error::InvalidPlatform {
                input: s.to_string(),
            });
        }
        Ok(Platform {
            os: parts[0].into(),
            architecture: parts[1].into(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn normalisation_follows_containerd() {
        for (input, canonical) in [
            ("linux/x86_64", "linux/amd64"),
            ("Linux/AMD64", "linux/amd64"),
            ("linux/x86-64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/aarch64", "linux/arm64/v8"),
            ("linux/arm64", "linux/arm64/v8"),
            ("linux/arm64/8", "linux/arm64/v8"),
            ("linux/ARM64/V8", "linux/arm64/v8"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/i386", "linux/386"),
            ("windows/amd64", "windows/amd64"),
            ("macos/arm64", "darwin/arm64/v8"),
            ("linux/s390x", "linux/s390x"),
        ] {
            assert_eq!(p(input).normalized().to_string(), canonical, "{input}");
        }
    }

    #[test]
    fn matching_table() {
        for (want, have, expected) in [
            ("linux/x86_64", "linux/amd64", true),
            ("linux/amd64", "LINUX/x86_64", true),
            ("linux/aarch64", "linux/arm64/v8", true),
            ("linux/arm64", "linux/arm64", true),
            ("linux/arm64/v8", "linux/arm64", true),
            ("linux/arm/v7", "linux/arm/v6", true),
            ("linux/arm/v7", "linux/arm", true),
            ("linux/arm/v6", "linux/arm/v7", false),
            ("linux/amd64", "linux/arm64", false),
            ("linux/amd64", "windows/amd64", false),
            ("linux/s390x", "linux/amd64", false),
            ("linux/arm64", "linux/arm/v7", false),
            ("linux/amd64/v3", "linux/amd64", true),
            ("linux/amd64/v3", "linux/amd64/v2", true),
            ("linux/amd64", "linux/amd64/v3", false),
        ] {
            assert_eq!(p(want).matches(&p(have)), expected, "{want} wants {have}");
        }
        // An exact variant outranks an older one that also runs.
        let want = p("linux/arm/v7");
        assert!(want.match_rank(&p("linux/arm/v7")) < want.match_rank(&p("linux/arm/v5")));
    }

    #[test]
    fn bad_platforms_are_named() {
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            let e = bad.parse::<Platform>().unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
