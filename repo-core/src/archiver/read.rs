//! The file readers: read a file opened by the walker (skipping sparse holes), chunk it, and
//! queue each new chunk to the pack writer, checking that the file stayed the one the walker saw.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;

use super::{FileDone, FileJob, Shared};
use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::format::BlobType;
use crate::pack::BlobQueue;
use crate::progress::{Phase, ProgressEvent};
use crate::source::{self};

/// Reads a file, producing the zeros of its holes without reading them when it is sparse.
///
/// Reading a hole makes the kernel zero-fill page after page; for a mostly empty multi-GiB
/// file that dominates the backup. Holes still reach the chunker as zeros, so they chunk and
/// dedupe exactly as if they had been read.
pub(super) struct HoleSkippingReader<'f> {
    file: &'f File,
    pos: u64,
    /// Bytes up to here (from `pos`) are known to be a hole.
    hole_end: u64,
    /// Bytes up to here (from `hole_end`) are known to be data.
    data_end: u64,
    sparse: bool,
}

impl<'f> HoleSkippingReader<'f> {
    fn new(file: &'f File, sparse: bool) -> Self {
        Self {
            file,
            pos: 0,
            hole_end: 0,
            data_end: 0,
            sparse,
        }
    }

    /// Finds the next data region at or after `pos`.
    fn locate(&mut self) -> std::io::Result<()> {
        use nix::unistd::{lseek, Whence};
        use std::os::fd::AsRawFd;
        let fd = self.file.as_raw_fd();
        let at = i64::try_from(self.pos).map_err(std::io::Error::other)?;
        match lseek(fd, at, Whence::SeekData) {
            Ok(data) => {
                let data = data as u64;
                let hole =
                    lseek(fd, data as i64, Whence::SeekHole).map_err(std::io::Error::from)? as u64;
                self.hole_end = data;
                self.data_end = hole;
            }
            // No data after `pos`: the rest is a hole up to the end of the file.
            Err(nix::errno::Errno::ENXIO) => {
                let end = self.file.metadata()?.len();
                self.hole_end = end;
                self.data_end = end;
            }
            // File systems without SEEK_DATA: read everything.
            Err(_) => self.sparse = false,
        }
        Ok(())
    }
}

impl Read for HoleSkippingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if !self.sparse {
            let n = self.file.read_at(buf, self.pos)?;
            self.pos += n as u64;
            return Ok(n);
        }
        if self.pos >= self.data_end {
            self.locate()?;
            if !self.sparse || self.pos >= self.data_end {
                // Past the last hole (or no hole support): plain reads from here on.
                self.sparse = false;
                return self.read(buf);
            }
        }
        let n = if self.pos < self.hole_end {
            let n = buf
                .len()
                .min(usize::try_from(self.hole_end - self.pos).unwrap_or(usize::MAX));
            buf[..n].fill(0);
            n
        } else {
            let want = buf
                .len()
                .min(usize::try_from(self.data_end - self.pos).unwrap_or(usize::MAX));
            self.file.read_at(&mut buf[..want], self.pos)?
        };
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads one file: chunks, hashes, dedups and queues new chunks.
pub(super) fn read_file(
    shared: &Shared<'_>,
    chunker: &mut Chunker,
    job: &FileJob,
    queue: &BlobQueue<'_>,
) -> Result<FileDone> {
    let path = job.path.as_path();
    // Fewer allocated blocks than the size needs: the file has holes.
    let sparse = job.opened.blocks.saturating_mul(512) < job.opened.size;
    let mut file = HoleSkippingReader::new(&job.file, sparse);
    let key = shared.repo.master_key();
    chunker.reset();
    let mut content = Vec::new();
    let mut bytes = 0u64;
    loop {
        shared.ctx.cancel.check()?;
        if shared.failed() {
            return Err(Error::cancelled());
        }
        let chunk = match chunker.next_chunk(&mut file) {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        };
        let id = key.blob_id(chunk);
        let len = chunk.len() as u64;
        queue.save_with_id(BlobType::Data, id, || chunk.to_vec());
        content.push(id);
        bytes += len;
        let _ = shared.bytes_read.fetch_add(len, Ordering::Relaxed);
        shared.ctx.progress.event(&ProgressEvent::Advanced {
            phase: Phase::Backup,
            items: 0,
            bytes: len,
        });
    }
    if let Ok(after) = file.file.metadata() {
        if source::clamped_ns((after.mtime(), after.mtime_nsec())) != job.seen.mtime_ns
            || after.ino() != job.seen.inode
            || after.size() != job.seen.size
            || after.size() != bytes
        {
            let message = "file changed while it was read; the snapshot holds the bytes read";
            shared
                .ctx
                .progress
                .event(&ProgressEvent::Warning { path, message });
        }
    }
    shared.ctx.progress.event(&ProgressEvent::Advanced {
        phase: Phase::Backup,
        items: 1,
        bytes: 0,
    });
    Ok(FileDone { content, bytes })
}
