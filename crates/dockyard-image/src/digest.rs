//! Content digests (`algorithm:hex`) and readers/writers that hash what
//! streams through them.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

use crate::error::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated content digest such as `sha256:e3b0…`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    /// The lowercase hex part, as used for blob file names.
    pub fn hex(&self) -> &str {
        &self.hex
    }
    /// The digest of `bytes` with `algorithm`.
    pub fn compute(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut h = Hasher::new(algorithm);
        h.update(bytes);
        h.finish()
    }
    /// sha256 of a byte slice.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }
    /// Build from an algorithm and a hex string, validating both.
    pub fn from_parts(algorithm: Algorithm, hex: &str) -> Result<Digest, Error> {
        let input = format!("{}:{}", algorithm.name(), hex);
        if hex.len() != algorithm.hex_len() {
            return Err(Error::InvalidDigest {
                input,
                reason: format!(
                    "{} needs {} hex digits, found {}",
                    algorithm.name(),
                    algorithm.hex_len(),
                    hex.len()
                ),
            });
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::InvalidDigest {
                input,
                reason: "the hex part must be lowercase hex digits".into(),
            });
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }
    pub fn to_oci(&self) -> oci_spec::image::Digest {
        // Our digests are stricter than oci-spec's, so this always parses.
        oci_spec::image::Digest::from_str(&self.to_string())
            .unwrap_or_else(|_| unreachable!("validated digest {self} rejected by oci-spec"))
    }
    pub fn from_oci(d: &oci_spec::image::Digest) -> Result<Digest, Error> {
        d.to_string().parse()
    }
    /// A short form for humans: `sha256:0123456789ab`.
    pub fn short(&self) -> String {
        format!("{}:{}", self.algorithm.name(), &self.hex[..12])
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let (alg, hex) = s.split_once(':').ok_or_else(|| Error::InvalidDigest {
            input: s.to_string(),
            reason: "expected algorithm:hex".into(),
        })?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => {
                return Err(Error::InvalidDigest {
                    input: s.to_string(),
                    reason: format!("unsupported algorithm {other:?} (sha256 or sha512)"),
                })
            }
        };
        Digest::from_parts(algorithm, hex)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental hasher for either algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }
    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest {
                algorithm: Algorithm::Sha256,
                hex: hex::encode(h.finalize()),
            },
            Hasher::Sha512(h) => Digest {
                algorithm: Algorithm::Sha512,
                hex: hex::encode(h.finalize()),
            },
        }
    }
}

/// A reader that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, algorithm: Algorithm) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(algorithm),
            count: 0,
        }
    }
    /// The digest and byte count of everything read so far.
    pub fn finish(self) -> (Digest, u64) {
        (self.hasher.finish(), self.count)
    }
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(Algorithm::Sha256),
            count: 0,
        }
    }
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, self.hasher.finish(), self.count)
    }
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that fails at end of stream unless the content matched the
/// expected digest (and size, when known). Consumers see the error as an
/// `io::Error` of kind `InvalidData` wrapping the `Error::DigestMismatch`.
pub struct VerifyingReader<R> {
    inner: HashingReader<R>,
    expected: Digest,
    expected_size: Option<u64>,
    what: String,
    verified: bool,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, expected_size: Option<u64>, what: String) -> Self {
        VerifyingReader {
            inner: HashingReader::new(inner, expected.algorithm()),
            expected,
            expected_size,
            what,
            verified: false,
        }
    }
    fn check(&mut self) -> io::Result<()> {
        let hasher = std::mem::replace(
            &mut self.inner.hasher,
            Hasher::new(self.expected.algorithm()),
        );
        let actual = hasher.finish();
        let count = self.inner.count;
        if let Some(size) = self.expected_size {
            if size != count {
                return Err(invalid_data(Error::SizeMismatch {
                    what: self.what.clone(),
                    expected: size,
                    actual: count,
                }));
            }
        }
        if actual != self.expected {
            return Err(invalid_data(Error::DigestMismatch {
                what: self.what.clone(),
                expected: self.expected.clone(),
                actual,
            }));
        }
        self.verified = true;
        Ok(())
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.verified {
            return Ok(0);
        }
        if let Some(size) = self.expected_size {
            if self.inner.count > size {
                return self.check().map(|_| 0);
            }
        }
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.check()?;
        }
        Ok(n)
    }
}

pub fn invalid_data(e: Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Turn an `io::Error` that carries one of our errors back into it; other
/// I/O errors get the path they happened on.
pub fn unwrap_io(e: io::Error, path: &std::path::Path) -> Error {
    if e.get_ref()
        .map(|inner| inner.is::<Error>())
        .unwrap_or(false)
    {
        match e.into_inner().map(|b| b.downcast::<Error>()) {
            Some(Ok(err)) => *err,
            Some(Err(other)) => Error::Io {
                path: path.to_path_buf(),
                source: io::Error::other(other),
            },
            None => unreachable!("checked get_ref above"),
        }
    } else {
        Error::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        assert_eq!(d, Digest::sha256_of(b""));
        assert_eq!(d.to_string().len(), 71);
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            "sha256:abc",
            "md5:00",
            "e3b0",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        ] {
            let err = bad.parse::<Digest>().unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn verifying_reader_detects_tampering() {
        let expected = Digest::sha256_of(b"hello");
        let mut ok = VerifyingReader::new(&b"hello"[..], expected.clone(), Some(5), "x".into());
        io::copy(&mut ok, &mut io::sink()).unwrap();
        let mut bad =
            VerifyingReader::new(&b"hellp"[..], expected.clone(), Some(5), "blob x".into());
        let err = io::copy(&mut bad, &mut io::sink()).unwrap_err();
        let msg = unwrap_io(err, std::path::Path::new("f")).to_string();
        assert!(
            msg.contains(&expected.to_string())
                && msg.contains(&Digest::sha256_of(b"hellp").to_string()),
            "{msg}"
        );
    }
}
