//! The content of a local regular file as a backup reads it: holes of a sparse file are
//! produced as zeros without being read, and after the read the file is compared with what
//! the walker's `lstat` saw.

use std::fs::File;
use std::io::Read;

use super::dirfd::{self, Meta};
use crate::source::SourceFile;

/// A regular file opened by the walker relative to its directory and confirmed to be the file
/// its `lstat` saw.
pub(super) struct LocalFile {
    reader: HoleSkippingReader,
    /// What the walker's lstat saw, which the tree records.
    seen: Seen,
}

/// The metadata of a file as the walker saw it.
#[derive(Clone, Copy)]
struct Seen {
    size: u64,
    mtime_ns: i64,
    inode: u64,
}

impl LocalFile {
    /// `file` as opened, `opened` its `fstat` then, `seen` the walker's `lstat` of it.
    pub(super) fn new(file: File, opened: &Meta, seen: &Meta) -> Self {
        // Fewer allocated blocks than the size needs: the file has holes.
        let sparse = opened.blocks.saturating_mul(512) < opened.size;
        Self {
            reader: HoleSkippingReader::new(file, sparse),
            seen: Seen {
                size: seen.size,
                mtime_ns: dirfd::clamped_ns(seen.mtime),
                inode: seen.ino,
            },
        }
    }
}

impl Read for LocalFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader.read(buf)
    }
}

impl SourceFile for LocalFile {
    fn changed_while_read(&self, len: u64) -> bool {
        match dirfd::fstat(&self.reader.file) {
            Ok(after) => {
                dirfd::clamped_ns(after.mtime) != self.seen.mtime_ns
                    || after.ino != self.seen.inode
                    || after.size != self.seen.size
                    || after.size != len
            }
            // Nothing to compare with: the read itself succeeded.
            Err(_) => false,
        }
    }
}

/// Reads a file, producing the zeros of its holes without reading them when it is sparse.
///
/// Reading a hole makes the kernel zero-fill page after page; for a mostly empty multi-GiB
/// file that dominates the backup. Holes still reach the chunker as zeros, so they chunk and
/// dedupe exactly as if they had been read.
struct HoleSkippingReader {
    file: File,
    pos: u64,
    /// Bytes up to here (from `pos`) are known to be a hole.
    hole_end: u64,
    /// Bytes up to here (from `hole_end`) are known to be data.
    data_end: u64,
    sparse: bool,
}

impl HoleSkippingReader {
    fn new(file: File, sparse: bool) -> Self {
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

impl Read for HoleSkippingReader {
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
