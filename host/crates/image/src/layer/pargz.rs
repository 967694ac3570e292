//! Parallel gzip in the manner of pigz: the input is cut into fixed-size
//! blocks, each compressed to raw deflate on a worker thread and ended with a
//! sync flush (the last one with a final block), and the pieces concatenated
//! behind one gzip header with a combined CRC. Blocks are independent and
//! fixed in size, so the output is the same whatever the number of threads:
//! the layer digest stays deterministic.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Input bytes per independently compressed block.
pub const BLOCK_SIZE: usize = 1 << 20;

type BlockResult = io::Result<(Vec<u8>, crc32fast::Hasher)>;

struct Job {
    data: Vec<u8>,
    last: bool,
    reply: SyncSender<BlockResult>,
}

/// Compresses one block to raw deflate, ending on a byte boundary (sync
/// flush) or with the final block.
fn compress_block(data: &[u8], level: u32, last: bool) -> BlockResult {
    let mut crc = crc32fast::Hasher::new();
    crc.update(data);
    let mut c = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 4096);
    let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity().max(64 << 10));
        }
        let consumed = usize::try_from(c.total_in()).expect("block fits in memory");
        let status = c.compress_vec(&data[consumed..], &mut out, flush).map_err(io::Error::other)?;
        let all_in = usize::try_from(c.total_in()).expect("block fits in memory") == data.len();
        let room_left = out.len() < out.capacity();
        match status {
            Status::StreamEnd => break,
            _ if !last && all_in && room_left => break,
            _ => {}
        }
    }
    Ok((out, crc))
}

/// A `Write` that gzips what it is given using `threads` workers.
pub struct ParGzEncoder<W: Write> {
    out: Option<W>,
    level: u32,
    block: Vec<u8>,
    jobs: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    pending: VecDeque<Receiver<BlockResult>>,
    max_pending: usize,
    crc: crc32fast::Hasher,
    total: u64,
}

impl<W: Write> ParGzEncoder<W> {
    pub fn new(mut out: W, level: u32, threads: usize) -> io::Result<Self> {
        // Fixed header: no name, no mtime, so equal input gives equal bytes.
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])?;
        let threads = threads.max(1);
        let (jobs, workers) = if threads > 1 {
            let (tx, rx) = mpsc::channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            let workers = (0..threads)
                .map(|_| {
                    let rx = Arc::clone(&rx);
                    std::thread::spawn(move || {
                        loop {
                            let job = {
                                let Ok(guard) = rx.lock() else { return };
                                match guard.recv() {
                                    Ok(job) => job,
                                    Err(_) => return,
                                }
                            };
                            let _ = job.reply.send(compress_block(&job.data, level, job.last));
                        }
                    })
                })
                .collect();
            (Some(tx), workers)
        } else {
            (None, Vec::new())
        };
        Ok(ParGzEncoder {
            out: Some(out),
            level,
            block: Vec::with_capacity(BLOCK_SIZE),
            jobs,
            workers,
            pending: VecDeque::new(),
            max_pending: threads * 2,
            crc: crc32fast::Hasher::new(),
            total: 0,
        })
    }

    fn out(&mut self) -> &mut W {
        self.out.as_mut().expect("writer used after finish")
    }

    fn emit(&mut self, result: BlockResult) -> io::Result<()> {
        let (bytes, crc) = result?;
        self.crc.combine(&crc);
        self.out().write_all(&bytes)
    }

    fn wait_oldest(&mut self) -> io::Result<()> {
        if let Some(rx) = self.pending.pop_front() {
            let result = rx.recv().map_err(|_| io::Error::other("gzip worker died"))?;
            self.emit(result)?;
        }
        Ok(())
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(if last { 0 } else { BLOCK_SIZE }));
        self.total += data.len() as u64;
        match &self.jobs {
            None => {
                let result = compress_block(&data, self.level, last);
                self.emit(result)
            }
            Some(jobs) => {
                let (tx, rx) = mpsc::sync_channel(1);
                jobs.send(Job { data, last, reply: tx })
                    .map_err(|_| io::Error::other("gzip workers stopped"))?;
                self.pending.push_back(rx);
                while self.pending.len() >= self.max_pending {
                    self.wait_oldest()?;
                }
                Ok(())
            }
        }
    }

    /// Writes the last block and the trailer; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while !self.pending.is_empty() {
            self.wait_oldest()?;
        }
        let crc = std::mem::take(&mut self.crc).finalize();
        let total = self.total;
        let out = self.out();
        out.write_all(&crc.to_le_bytes())?;
        #[allow(clippy::cast_possible_truncation, reason = "gzip stores the length modulo 2^32")]
        out.write_all(&(total as u32).to_le_bytes())?;
        out.flush()?;
        Ok(self.out.take().expect("present until finish"))
    }
}

impl<W: Write> Write for ParGzEncoder<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            let room = BLOCK_SIZE - self.block.len();
            let take = room.min(buf.len());
            self.block.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.block.len() == BLOCK_SIZE {
                self.submit(false)?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ParGzEncoder<W> {
    fn drop(&mut self) {
        self.jobs = None;
        self.pending.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gz(data: &[u8], threads: usize) -> Vec<u8> {
        let mut enc = ParGzEncoder::new(Vec::new(), 6, threads).unwrap();
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn output_is_valid_gzip_and_independent_of_threads() {
        let mut data = Vec::new();
        for i in 0..(3 * BLOCK_SIZE + 12345) {
            data.push(u8::try_from((i * 7 + i / 1000) % 251).unwrap());
        }
        let one = gz(&data, 1);
        let four = gz(&data, 4);
        assert_eq!(one, four);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(one.as_slice()).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        // Exact multiple of the block size and empty input.
        let exact = vec![9u8; BLOCK_SIZE];
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gz(&exact, 2).as_slice()).read_to_end(&mut back).unwrap();
        assert_eq!(back, exact);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gz(&[], 2).as_slice()).read_to_end(&mut back).unwrap();
        assert!(back.is_empty());
    }
}
