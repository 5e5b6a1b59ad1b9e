//! The file readers: read a file's content as its source hands it over, chunk it, and queue
//! each new chunk to the pack writer.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{FileDone, FileJob};
use crate::chunker::Chunker;
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::format::BlobType;
use crate::pack::{Abort, BlobQueue};
use crate::progress::{OpCtx, Phase, ProgressEvent};

/// What a reader thread needs: the key that names chunks, progress and cancellation, the
/// backup's abort flag and its bytes-read counter.
pub(super) struct Reading<'a> {
    pub(super) key: &'a MasterKey,
    pub(super) ctx: OpCtx<'a>,
    pub(super) abort: &'a Abort<'a>,
    pub(super) bytes_read: &'a AtomicU64,
}

/// Reads one file: chunks, hashes, dedups and queues new chunks.
pub(super) fn read_file(
    r: &Reading<'_>,
    chunker: &mut Chunker,
    job: &mut FileJob,
    queue: &BlobQueue<'_>,
) -> Result<FileDone> {
    let path = job.path.as_path();
    let file = &mut *job.content;
    let key = r.key;
    chunker.reset();
    let mut content = Vec::new();
    let mut bytes = 0u64;
    r.ctx.progress.event(&ProgressEvent::FileStarted { path });
    loop {
        r.ctx.cancel.check()?;
        if r.abort.failed() {
            return Err(Error::cancelled());
        }
        let chunk = match chunker.next_chunk(file) {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        };
        let id = key.blob_id(chunk);
        let len = chunk.len() as u64;
        queue.save_with_id(BlobType::Data, id, || chunk.to_vec());
        content.push(id);
        bytes += len;
        let _ = r.bytes_read.fetch_add(len, Ordering::Relaxed);
        r.ctx.progress.event(&ProgressEvent::Advanced {
            phase: Phase::Backup,
            items: 0,
            bytes: len,
        });
    }
    if file.changed_while_read(bytes) {
        let message = "file changed while it was read; the snapshot holds the bytes read";
        r.ctx
            .progress
            .event(&ProgressEvent::Warning { path, message });
    }
    r.ctx.progress.event(&ProgressEvent::FileSaved {
        path,
        status: job.status,
        bytes,
    });
    r.ctx.progress.event(&ProgressEvent::Advanced {
        phase: Phase::Backup,
        items: 1,
        bytes: 0,
    });
    Ok(FileDone { content, bytes })
}
