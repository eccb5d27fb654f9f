//! Deterministic compression and transparent decompression of layer blobs.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::{mpsc, Mutex};

use crate::media::Compression;

/// Version of the gzip bytes `gzip_blocks` writes. Every pushed digest of a
/// layer compressed here depends on it: the store remembers compressed forms
/// under it, so a change of format, levels, rule or libdeflate version (bump
/// this) never reuses forms an older version wrote. 1: pigz-style zlib level
/// 6; 2: one libdeflate member per 1 MiB block, level 4 for text-like blocks
/// and 1 for the rest; 3: as 2, every deflated block at level 1.
pub const GZIP_FORMAT: u32 = 3;
/// The libdeflate level of every block that is not stored, chosen by the
/// size rule (an image's gzip layers within 2 % of the bytes skopeo pushes,
/// at the least time; measured in the README's performance section): level
/// 1 is 1.3 % over skopeo on the bench image (7 % on its text layer) and
/// takes 0.6 of the CPU time level 4 took on text.
pub const GZIP_LEVEL: i32 = 1;
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

/// Uncompressed bytes per gzip member.
pub const GZIP_BLOCK: usize = 1 << 20;

/// The version of the bytes `compress_into` writes for `compression`; see
/// `GZIP_FORMAT`.
pub fn format_version(compression: Compression) -> u32 {
    match compression {
        Compression::Gzip => GZIP_FORMAT,
        Compression::None | Compression::Zstd => 1,
    }
}

fn compression_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

/// Fill `buf` with up to `len` bytes (fewer only at end of input).
fn read_block(reader: &mut impl Read, buf: &mut Vec<u8>, len: usize) -> io::Result<()> {
    buf.clear();
    reader.take(len as u64).read_to_end(buf)?;
    Ok(())
}

/// Whether the uncompressed tar `reader` yields looks as if `gzip_blocks`
/// will store rather than deflate it (random data, compressed files),
/// judged from its second block (the first opens with tar headers of
/// directories, which are not the data) or its only one. A guess for
/// scheduling, never for the bytes: such a layer costs little to compress
/// and much to upload, so a push starts it first.
pub fn looks_incompressible(mut reader: impl Read) -> io::Result<bool> {
    let mut block = Vec::with_capacity(GZIP_BLOCK);
    read_block(&mut reader, &mut block, GZIP_BLOCK)?;
    if block.len() == GZIP_BLOCK {
        let mut next = Vec::with_capacity(GZIP_BLOCK);
        read_block(&mut reader, &mut next, GZIP_BLOCK)?;
        if next.len() == GZIP_BLOCK {
            block = next;
        }
    }
    Ok(block_kind(&block) == BlockKind::Stored)
}

/// How a block is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockKind {
    /// Stored: its byte histogram is so flat (sum of squared counts within
    /// 1/64 of a uniform one's, above ~7.99 bits per byte) that deflate
    /// would gain well under 1 % — random data, compressed files — at the
    /// cost of compressing it.
    Stored,
    Deflated,
}

/// The kind of a block, from its first 64 KiB (and, when those are near
/// flat, the whole block). Integer arithmetic only, so the choice (and the
/// digest) is the same on every machine.
fn block_kind(block: &[u8]) -> BlockKind {
    let head = &block[..block.len().min(64 << 10)];
    let (squares, n) = (byte_squares(head), head.len() as u64);
    // Far from flat (over twice a uniform sum) settles it without reading on.
    let flat = if head.len() == block.len() {
        squares * 256 * 64 <= n * n * 65
    } else {
        let n_all = block.len() as u64;
        squares * 256 <= n * n * 2 && byte_squares(block) * 256 * 64 <= n_all * n_all * 65
    };
    if flat {
        BlockKind::Stored
    } else {
        BlockKind::Deflated
    }
}

/// The sum of the squared counts of each byte value in `data` (a uniform
/// histogram gives len²/256).
fn byte_squares(data: &[u8]) -> u64 {
    // Four tables break the store-to-load dependency of repeated bytes.
    let mut counts = [[0u32; 256]; 4];
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        counts[0][q[0] as usize] += 1;
        counts[1][q[1] as usize] += 1;
        counts[2][q[2] as usize] += 1;
        counts[3][q[3] as usize] += 1;
    }
    for &b in quads.remainder() {
        counts[0][b as usize] += 1;
    }
    (0..256)
        .map(|i| {
            let c = (counts[0][i] + counts[1][i] + counts[2][i] + counts[3][i]) as u64;
            c * c
        })
        .sum()
}

/// What a worker keeps between blocks: its compressors and scratch space
/// (allocated once: 1 MiB buffers made and freed per block would leave
/// memory behind in every thread's allocator arena).
struct BlockCompressor {
    deflate: libdeflater::Compressor,
    stored: libdeflater::Compressor,
    scratch: Vec<u8>,
}

impl BlockCompressor {
    fn new() -> io::Result<Self> {
        let level = |l| {
            libdeflater::CompressionLvl::new(l)
                .map_err(|e| io::Error::other(format!("libdeflate level {l}: {e:?}")))
        };
        let mut deflate = libdeflater::Compressor::new(level(GZIP_LEVEL)?);
        let bound = deflate.deflate_compress_bound(GZIP_BLOCK);
        Ok(BlockCompressor {
            deflate,
            stored: libdeflater::Compressor::new(level(0)?),
            scratch: vec![0; bound],
        })
    }

    /// Write into `out` one whole gzip member (mtime 0, no name, OS 255)
    /// holding `block`.
    fn member(&mut self, block: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let c = match block_kind(block) {
            BlockKind::Stored => &mut self.stored,
            BlockKind::Deflated => &mut self.deflate,
        };
        let n = c
            .deflate_compress(block, &mut self.scratch)
            .map_err(|e| io::Error::other(format!("libdeflate: {e:?}")))?;
        out.clear();
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        out.extend_from_slice(&self.scratch[..n]);
        out.extend_from_slice(&crc32fast::hash(block).to_le_bytes());
        out.extend_from_slice(&(block.len() as u32).to_le_bytes());
        Ok(())
    }
}

/// A compressed member and the block it came from (for reuse).
type Done = io::Result<(Vec<u8>, Vec<u8>)>;

/// Buffers passed around rather than allocated per block.
#[derive(Default)]
struct Buffers(Mutex<Vec<Vec<u8>>>);

impl Buffers {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .ok()
            .and_then(|mut b| b.pop())
            .unwrap_or_else(|| Vec::with_capacity(GZIP_BLOCK + (64 << 10)))
    }
    fn give(&self, buf: Vec<u8>) {
        if let Ok(mut b) = self.0.lock() {
            b.push(buf);
        }
    }
}

/// Deterministic, parallel gzip: the input is cut into fixed 1 MiB blocks,
/// each compressed by libdeflate into a gzip member of its own (as BGZF and
/// eStargz layers are; every gzip reader joins members). The bytes depend
/// only on the input — never on how many threads compressed it. Workers
/// compress while this thread reads (and hashes, if the reader does) the
/// next blocks and writes finished members in order; memory stays at a few
/// blocks per thread.
pub fn gzip_blocks<R: Read, W: Write>(
    mut reader: R,
    mut writer: W,
    threads: usize,
) -> io::Result<W> {
    let threads = threads.max(1);
    type Job = (Vec<u8>, mpsc::SyncSender<Done>);
    let buffers = Buffers::default();
    // A rendezvous channel: the reader waits for an idle worker.
    let (jobs, queue) = mpsc::sync_channel::<Job>(0);
    let queue = Mutex::new(queue);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (queue, buffers) = (&queue, &buffers);
            s.spawn(move || {
                let mut compressor = BlockCompressor::new();
                loop {
                    let job = match queue.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => return,
                    };
                    let Ok((block, done)) = job else { return };
                    let mut member = buffers.take();
                    let result = match &mut compressor {
                        Ok(c) => c.member(&block, &mut member).map(|()| (member, block)),
                        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                    };
                    let _ = done.send(result);
                }
            });
        }
        let mut pending: VecDeque<mpsc::Receiver<Done>> = VecDeque::new();
        let write_oldest =
            |pending: &mut VecDeque<mpsc::Receiver<Done>>, writer: &mut W| -> io::Result<()> {
                if let Some(rx) = pending.pop_front() {
                    let (member, block) = rx
                        .recv()
                        .map_err(|_| io::Error::other("a compression thread stopped"))??;
                    writer.write_all(&member)?;
                    buffers.give(member);
                    buffers.give(block);
                }
                Ok(())
            };
        let mut first = true;
        loop {
            let mut block = buffers.take();
            read_block(&mut reader, &mut block, GZIP_BLOCK)?;
            // An empty input is still one (empty) member.
            if block.is_empty() && !first {
                break;
            }
            first = false;
            let full = block.len() == GZIP_BLOCK;
            let (done, result) = mpsc::sync_channel(1);
            jobs.send((block, done))
                .map_err(|_| io::Error::other("the compression threads stopped"))?;
            pending.push_back(result);
            while pending.len() > threads {
                write_oldest(&mut pending, &mut writer)?;
            }
            if !full {
                break;
            }
        }
        drop(jobs);
        while !pending.is_empty() {
            write_oldest(&mut pending, &mut writer)?;
        }
        Ok(writer)
    })
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
        flate2::read::MultiGzDecoder::new(bytes)
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

    /// Pseudo-random bytes with a flat histogram (xorshift).
    fn flat(len: usize) -> Vec<u8> {
        let mut x: u64 = 88172645463325252;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn sha256(bytes: &[u8]) -> String {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(bytes))
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
        // And not on the run: a second compression gives the same digest.
        let again = gzip_blocks(&data[..], Vec::new(), 2).unwrap();
        assert_eq!(sha256(&again), sha256(&one));
    }

    /// Pushed digests depend on these bytes on every machine. If this fails
    /// the compressor's output changed (a level, the block size, the
    /// libdeflate version): bump GZIP_FORMAT, then update the digest here.
    #[test]
    fn block_gzip_bytes_are_those_of_this_format_version() {
        // Text blocks, one of random and text halves, a flat (stored) one,
        // a short last one.
        let mut data = sample(3 * GZIP_BLOCK);
        data.extend(flat(GZIP_BLOCK + 999));
        let gz = gzip_blocks(&data[..], Vec::new(), 2).unwrap();
        assert_eq!(
            (GZIP_FORMAT, gz.len(), sha256(&gz).as_str()),
            (
                3,
                2602294,
                "c817995974f285a359b914aadd21a04ab6a981b18c730badb5a6239263d69152"
            )
        );
    }

    #[test]
    fn flat_blocks_are_stored_and_the_rest_deflated() {
        let random = flat(GZIP_BLOCK);
        assert_eq!(block_kind(&random), BlockKind::Stored);
        let gz = gzip_blocks(&random[..], Vec::new(), 2).unwrap();
        // Stored: the data, 5 bytes per 64 KiB stored block, gzip framing.
        assert!(gz.len() < GZIP_BLOCK + 200, "{}", gz.len());
        assert_eq!(gunzip(&gz), random);
        let text = sample(GZIP_BLOCK);
        assert_eq!(block_kind(&text[..70_000]), BlockKind::Deflated);
        assert_eq!(block_kind(b"aaaaaaaaaaaaaaaaaaaaaaaa"), BlockKind::Deflated);
        // Random bytes with some text after the first 64 KiB: deflated.
        let mut mixed = flat(GZIP_BLOCK);
        mixed[100_000..200_000].copy_from_slice(&text[..100_000]);
        assert_eq!(block_kind(&mixed), BlockKind::Deflated);
    }

    #[test]
    fn incompressible_layers_are_told_from_their_second_block() {
        // A tar of directories and then random data: the first block opens
        // with headers (not flat), the second is all data.
        let mut tar = vec![0u8; 3 * 512];
        tar[..12].copy_from_slice(b"data/random/");
        tar.extend(flat(3 * GZIP_BLOCK));
        assert!(looks_incompressible(&tar[..]).unwrap());
        assert!(!looks_incompressible(&sample(3 * GZIP_BLOCK)[..]).unwrap());
        // A layer of one block is judged by it.
        assert!(looks_incompressible(&flat(GZIP_BLOCK / 2)[..]).unwrap());
        assert!(!looks_incompressible(&b"short text"[..]).unwrap());
        // Random data then text: the second block is text.
        let mut mixed = flat(GZIP_BLOCK);
        mixed.extend(sample(2 * GZIP_BLOCK));
        assert!(!looks_incompressible(&mixed[..]).unwrap());
    }

    #[test]
    fn block_gzip_costs_little_ratio() {
        // Within 2 % of one zlib stream at level 6 (what skopeo's gzip is
        // measured against in bench/registry.sh).
        let data = sample(4 * GZIP_BLOCK);
        let blocks = gzip_blocks(&data[..], Vec::new(), 2).unwrap();
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap();
        assert!(
            (blocks.len() as f64) < single.len() as f64 * 1.02,
            "{} vs {}",
            blocks.len(),
            single.len()
        );
    }
}
