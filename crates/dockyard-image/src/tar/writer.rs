//! A minimal ustar writer with PAX extended headers where needed. Written by
//! hand so every byte of a header is under our control (reproducibility).

use std::io::{self, Read, Write};

const BLOCK: usize = 512;
const MAX_OCTAL_11: u64 = 0o777_7777_7777; // 8 GiB - 1
const MAX_OCTAL_7: u64 = 0o777_7777;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink(Vec<u8>),
    Hardlink(Vec<u8>),
    Fifo,
}

#[derive(Clone, Debug)]
pub struct EntryHeader {
    /// Relative path, without leading `/` and without a trailing `/`.
    pub path: Vec<u8>,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub uname: String,
    pub gname: String,
    pub mtime: u64,
    pub size: u64,
}

/// A ustar header for a regular file `name` (at most 100 bytes) of `size`
/// bytes, mode 0644, owner 0:0, mtime 0. Sizes past ustar's octal range
/// use the base-256 form every current reader (Go, GNU tar, tar-rs) accepts.
pub fn file_header(name: &[u8], size: u64) -> [u8; BLOCK] {
    let h = EntryHeader {
        path: name.to_vec(),
        kind: EntryKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        uname: String::new(),
        gname: String::new(),
        mtime: 0,
        size,
    };
    let octal_size = if size > MAX_OCTAL_11 { 0 } else { size };
    let mut b = TarWriter::<Vec<u8>>::header_block(
        &h,
        &name[..name.len().min(100)],
        b"",
        b"",
        octal_size,
        b'0',
    );
    if size > MAX_OCTAL_11 {
        b[124] = 0x80;
        b[125..128].fill(0);
        b[128..136].copy_from_slice(&size.to_be_bytes());
        b[148..156].copy_from_slice(b"        ");
        let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
        let s = format!("{sum:06o}");
        b[148..154].copy_from_slice(s.as_bytes());
        b[154] = 0;
        b[155] = b' ';
    }
    b
}

pub struct TarWriter<W: Write> {
    out: W,
}

fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

fn put_bytes(field: &mut [u8], value: &[u8]) {
    field[..value.len()].copy_from_slice(value);
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "<len> <key>=<value>\n", where <len> counts itself.
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// Split a path into ustar (prefix, name) if it fits.
fn split_ustar(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((&[], path));
    }
    // Find a '/' so that prefix <= 155 and name <= 100.
    for (i, &b) in path.iter().enumerate() {
        if b == b'/' && i <= 155 && path.len() - i - 1 <= 100 && path.len() - i - 1 > 0 {
            return Some((&path[..i], &path[i + 1..]));
        }
    }
    None
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter { out }
    }

    fn header_block(
        h: &EntryHeader,
        name: &[u8],
        prefix: &[u8],
        link: &[u8],
        size: u64,
        typeflag: u8,
    ) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        put_bytes(&mut b[0..100], name);
        put_octal(&mut b[100..108], u64::from(h.mode & 0o7777));
        put_octal(&mut b[108..116], h.uid.min(MAX_OCTAL_7));
        put_octal(&mut b[116..124], h.gid.min(MAX_OCTAL_7));
        put_octal(&mut b[124..136], size);
        put_octal(&mut b[136..148], h.mtime.min(MAX_OCTAL_11));
        b[156] = typeflag;
        put_bytes(&mut b[157..257], link);
        put_bytes(&mut b[257..263], b"ustar\0");
        put_bytes(&mut b[263..265], b"00");
        put_bytes(
            &mut b[265..297],
            &h.uname.as_bytes()[..h.uname.len().min(31)],
        );
        put_bytes(
            &mut b[297..329],
            &h.gname.as_bytes()[..h.gname.len().min(31)],
        );
        put_octal(&mut b[329..337], 0);
        put_octal(&mut b[337..345], 0);
        put_bytes(&mut b[345..500], prefix);
        b[148..156].copy_from_slice(b"        ");
        let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
        let s = format!("{sum:06o}");
        b[148..154].copy_from_slice(s.as_bytes());
        b[154] = 0;
        b[155] = b' ';
        b
    }

    /// Write one entry. `data` must yield exactly `h.size` bytes for files.
    pub fn append(&mut self, h: &EntryHeader, data: &mut dyn Read) -> io::Result<()> {
        let mut path = h.path.clone();
        if h.kind == EntryKind::Dir {
            path.push(b'/');
        }
        let (typeflag, link): (u8, &[u8]) = match &h.kind {
            EntryKind::File => (b'0', b""),
            EntryKind::Dir => (b'5', b""),
            EntryKind::Symlink(t) => (b'2', t),
            EntryKind::Hardlink(t) => (b'1', t),
            EntryKind::Fifo => (b'6', b""),
        };
        let size = if h.kind == EntryKind::File { h.size } else { 0 };
        let mut pax = Vec::new();
        let (prefix, name) = match split_ustar(&path) {
            Some(p) => p,
            None => {
                pax.extend(pax_record("path", &path));
                (&b""[..], &path[..path.len().min(100)])
            }
        };
        let (prefix, name) = (prefix.to_vec(), name.to_vec());
        let link_field = if link.len() > 100 {
            pax.extend(pax_record("linkpath", link));
            &link[..100]
        } else {
            link
        };
        if size > MAX_OCTAL_11 {
            pax.extend(pax_record("size", size.to_string().as_bytes()));
        }
        if h.uid > MAX_OCTAL_7 {
            pax.extend(pax_record("uid", h.uid.to_string().as_bytes()));
        }
        if h.gid > MAX_OCTAL_7 {
            pax.extend(pax_record("gid", h.gid.to_string().as_bytes()));
        }
        if h.mtime > MAX_OCTAL_11 {
            pax.extend(pax_record("mtime", h.mtime.to_string().as_bytes()));
        }
        if !pax.is_empty() {
            if std::str::from_utf8(&path).is_err() || std::str::from_utf8(link).is_err() {
                let mut with_charset = pax_record("hdrcharset", b"BINARY");
                with_charset.extend(pax);
                pax = with_charset;
            }
            let base = path
                .rsplit(|&b| b == b'/')
                .find(|c| !c.is_empty())
                .unwrap_or(b"x");
            let mut pax_name = b"PaxHeaders/".to_vec();
            pax_name.extend_from_slice(&base[..base.len().min(80)]);
            let pax_header = EntryHeader {
                path: pax_name.clone(),
                kind: EntryKind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                uname: String::new(),
                gname: String::new(),
                mtime: h.mtime,
                size: pax.len() as u64,
            };
            let block =
                Self::header_block(&pax_header, &pax_name, b"", b"", pax.len() as u64, b'x');
            self.out.write_all(&block)?;
            self.out.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        let size_field = if size > MAX_OCTAL_11 { 0 } else { size };
        let block = Self::header_block(h, &name, &prefix, link_field, size_field, typeflag);
        self.out.write_all(&block)?;
        if size > 0 {
            let copied = io::copy(&mut data.take(size), &mut self.out)?;
            if copied != size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{}: expected {size} bytes, source gave {copied} (file changed while read?)",
                        String::from_utf8_lossy(&h.path)
                    ),
                ));
            }
            self.pad(size)?;
        }
        Ok(())
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// Write the end-of-archive marker and return the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; BLOCK * 2])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_headers_hold_any_size() {
        for size in [0u64, 1, MAX_OCTAL_11, MAX_OCTAL_11 + 1, 9 << 30] {
            let block = file_header(b"blobs/sha256/abc", size);
            let header = tar::Header::from_byte_slice(&block);
            assert_eq!(header.size().unwrap(), size);
            assert_eq!(
                header.cksum().unwrap(),
                header
                    .as_old()
                    .cksum
                    .iter()
                    .take(6)
                    .fold(0, |acc, &d| acc * 8 + u32::from(d - b'0'))
            );
            assert_eq!(header.path_bytes().as_ref(), b"blobs/sha256/abc");
        }
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_record("path", b"a");
        assert_eq!(r, b"9 path=a\n");
        let long = vec![b'x'; 95];
        let r = pax_record("path", &long);
        let len: usize = std::str::from_utf8(&r[..r.iter().position(|&b| b == b' ').unwrap()])
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, r.len());
    }
}
