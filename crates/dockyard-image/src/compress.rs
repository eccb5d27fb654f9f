//! Deterministic compression and transparent decompression of layer blobs.

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::media::Compression;

/// Gzip level used for every layer we compress: the same input always gives
/// the same bytes (no file name, mtime 0 in the header).
pub const GZIP_LEVEL: u32 = 6;
pub const ZSTD_LEVEL: i32 = 3;

/// Wrap `reader` so that it yields the uncompressed tar of a blob with the
/// given compression.
pub fn decompress<'a, R: Read + 'a>(
    reader: R,
    compression: Compression,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 16,
            reader,
        ))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
    })
}

/// Sniff the compression of `reader` from its first bytes and decompress.
pub fn decompress_sniffed<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(1 << 16, reader);
    let compression = Compression::sniff(buffered.fill_buf()?);
    decompress(buffered, compression)
}

/// Compress everything from `reader` into `writer`, deterministically.
pub fn compress_into<R: Read, W: Write>(
    mut reader: R,
    writer: W,
    compression: Compression,
) -> io::Result<W> {
    match compression {
        Compression::None => {
            let mut w = writer;
            io::copy(&mut reader, &mut w)?;
            Ok(w)
        }
        Compression::Gzip => {
            let mut enc = flate2::GzBuilder::new()
                .mtime(0)
                .operating_system(255)
                .write(writer, flate2::Compression::new(GZIP_LEVEL));
            io::copy(&mut reader, &mut enc)?;
            enc.finish()
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(writer, ZSTD_LEVEL)?;
            enc.include_checksum(false)?;
            io::copy(&mut reader, &mut enc)?;
            enc.finish()
        }
    }
}
