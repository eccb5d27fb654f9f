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
        Compression::Gzip => gzip_blocks(reader, writer, compression_threads()),
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(writer, ZSTD_LEVEL)?;
            enc.include_checksum(false)?;
            io::copy(&mut reader, &mut enc)?;
            enc.finish()
        }
    }
}

/// Uncompressed bytes per independently compressed gzip block.
pub const GZIP_BLOCK: usize = 1 << 20;
/// Deflate's window: each block is primed with this much of the input
/// before it, as pigz does, so blocks lose almost nothing in ratio.
const DICTIONARY: usize = 32 << 10;

fn compression_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

/// Read up to `len` bytes (fewer only at end of input).
fn read_block(reader: &mut impl Read, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    reader.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Raw deflate of one block, primed with `dictionary`, ending in a sync
/// flush (byte-aligned, so blocks concatenate) or, for the last, the end.
fn deflate_block(data: &[u8], dictionary: &[u8], last: bool) -> io::Result<Vec<u8>> {
    use flate2::{Compress, FlushCompress, Status};
    let mut c = Compress::new(flate2::Compression::new(GZIP_LEVEL), false);
    if !dictionary.is_empty() {
        c.set_dictionary(dictionary).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(data.len() / 2 + 4096);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity().max(64 << 10));
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == data.len();
        let room_left = out.capacity() - out.len() >= 4096;
        match status {
            Status::StreamEnd => break,
            _ if !last && all_in && room_left => break,
            _ => {}
        }
    }
    Ok(out)
}

/// Deterministic, parallel gzip: the input is cut into fixed 1 MiB blocks,
/// each deflated on its own (primed with the 32 KiB before it) and joined
/// into one gzip member (mtime 0, no name, OS 255). The bytes depend only
/// on the input — never on how many threads compressed it.
pub fn gzip_blocks<R: Read, W: Write>(
    mut reader: R,
    mut writer: W,
    threads: usize,
) -> io::Result<W> {
    writer.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
    let threads = threads.max(1);
    let mut crc = crc32fast::Hasher::new();
    let mut total: u64 = 0;
    let mut tail: Vec<u8> = Vec::new();
    let mut next = read_block(&mut reader, GZIP_BLOCK)?;
    loop {
        // A batch of blocks; each knows its dictionary and whether it is last.
        let mut batch: Vec<(Vec<u8>, Vec<u8>, bool)> = Vec::with_capacity(threads);
        while batch.len() < threads {
            let block = std::mem::take(&mut next);
            let full = block.len() == GZIP_BLOCK;
            next = if full {
                read_block(&mut reader, GZIP_BLOCK)?
            } else {
                Vec::new()
            };
            let last = next.is_empty();
            crc.update(&block);
            total += block.len() as u64;
            let dict = std::mem::take(&mut tail);
            tail = block[block.len().saturating_sub(DICTIONARY)..].to_vec();
            batch.push((block, dict, last));
            if last {
                break;
            }
        }
        let done = batch.last().map(|b| b.2).unwrap_or(true);
        let outputs: Vec<io::Result<Vec<u8>>> = if batch.len() == 1 {
            vec![deflate_block(&batch[0].0, &batch[0].1, batch[0].2)]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|(block, dict, last)| s.spawn(move || deflate_block(block, dict, *last)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(io::Error::other("compression thread panicked"))
                        })
                    })
                    .collect()
            })
        };
        for out in outputs {
            writer.write_all(&out?)?;
        }
        if done {
            break;
        }
    }
    writer.write_all(&crc.finalize().to_le_bytes())?;
    writer.write_all(&((total & 0xffff_ffff) as u32).to_le_bytes())?;
    Ok(writer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        // Half compressible text, half pseudo-random bytes.
        let mut v = Vec::with_capacity(len);
        let mut x: u32 = 12345;
        while v.len() < len {
            if (v.len() / 70_000) % 2 == 0 {
                v.extend_from_slice(b"the same line of text again and again, ");
            } else {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                v.push((x >> 16) as u8);
            }
        }
        v.truncate(len);
        v
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn block_gzip_round_trips_at_every_size() {
        for len in [
            0,
            1,
            100,
            GZIP_BLOCK - 1,
            GZIP_BLOCK,
            GZIP_BLOCK + 1,
            3 * GZIP_BLOCK + 777,
        ] {
            let data = sample(len);
            let gz = gzip_blocks(&data[..], Vec::new(), 3).unwrap();
            assert_eq!(gunzip(&gz), data, "length {len}");
        }
    }

    #[test]
    fn block_gzip_does_not_depend_on_thread_count() {
        let data = sample(5 * GZIP_BLOCK + 12345);
        let one = gzip_blocks(&data[..], Vec::new(), 1).unwrap();
        for threads in [2, 3, 8] {
            assert_eq!(
                gzip_blocks(&data[..], Vec::new(), threads).unwrap(),
                one,
                "{threads} threads"
            );
        }
    }

    #[test]
    fn block_gzip_costs_little_ratio() {
        let data = sample(4 * GZIP_BLOCK);
        let blocks = gzip_blocks(&data[..], Vec::new(), 2).unwrap();
        let mut single =
            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap();
        assert!(
            (blocks.len() as f64) < single.len() as f64 * 1.01,
            "{} vs {}",
            blocks.len(),
            single.len()
        );
    }
}
