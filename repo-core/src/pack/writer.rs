//! The pack writer: takes blobs (type, id, plaintext), seals each one (compress, encrypt, then
//! verify that it opens to the same plaintext before it leaves), fills one data pack and one
//! tree pack, verifies and uploads full packs in parallel, and on [`PackWriter::finish`] writes
//! the index files for every uploaded pack.
//!
//! Stages run as threads in the caller's [`std::thread::scope`], joined by bounded channels:
//! the blob queue (two per worker) → sealers (one per worker) → the packer → a rendezvous
//! channel → two uploaders. At most one pack per blob type is being filled and one per
//! uploader is in flight, so memory stays bounded whatever the input.
//!
//! Write order (spec/09-invariants.md): a pack is uploaded before the index file that lists it;
//! the caller writes a snapshot only after `finish` returned. Any failure is recorded in the
//! shared [`Abort`] handle, after which every stage drains its queue without work, leaving at
//! most unreferenced packs.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread::Scope;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::index::{IndexBlob, IndexFile, IndexPack};
use crate::format::pack::{self as pack_format, PackEntry};
use crate::format::{envelope, BlobType, MAX_PACK_BLOBS};
use crate::id::{BlobId, Id, IndexId, PackId};
use crate::progress::CancelToken;
use crate::repository::{Indexed, Repository};

/// Blobs per index file at most.
const INDEX_FILE_BLOBS: usize = 200_000;

/// The first error of an operation and the flag every stage polls to stop early; also stops
/// on cancellation.
pub(crate) struct Abort<'c> {
    cancel: &'c CancelToken,
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
}

impl<'c> Abort<'c> {
    pub(crate) fn new(cancel: &'c CancelToken) -> Self {
        Self {
            cancel,
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
        }
    }

    /// Records `e` unless an earlier error was recorded, and stops every stage.
    pub(crate) fn fail(&self, e: Error) {
        let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(e);
        }
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Whether a stage failed or the operation was cancelled.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed) || self.cancel.is_cancelled()
    }

    /// The cancellation token this handle watches.
    pub(crate) fn cancel(&self) -> &'c CancelToken {
        self.cancel
    }

    /// Takes the recorded error, if any.
    pub(crate) fn take_error(&self) -> Option<Error> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// What a pack writer stored.
pub(crate) struct Written {
    /// The uploaded packs (on a dry run: the packs that would have been uploaded).
    #[expect(
        dead_code,
        reason = "backup needs only the counters; prune, repair and copy will read it"
    )]
    pub(crate) packs: Vec<PackId>,
    /// The index files written for them (none on a dry run).
    #[expect(
        dead_code,
        reason = "backup needs only the counters; prune, repair and copy will read it"
    )]
    pub(crate) indexes: Vec<IndexId>,
    /// Stored (compressed, encrypted) bytes of the new blobs.
    pub(crate) bytes_added: u64,
    /// Number of new blobs.
    pub(crate) blobs_added: u64,
}

/// Writes new blobs into packs of one repository. See the module documentation.
pub(crate) struct PackWriter<'r> {
    repo: &'r Repository<Indexed>,
    abort: &'r Abort<'r>,
    level: i32,
    dry_run: bool,
    target: usize,
    /// Blobs queued by this writer: together with the index, the dedup set.
    session: Mutex<HashSet<BlobId>>,
    bytes_added: AtomicU64,
    blobs_added: AtomicU64,
    packs: Mutex<Vec<IndexPack>>,
}

/// The sending end of a running writer: clone it for every producer thread. The writer's
/// stages end when every queue handle is dropped.
#[derive(Clone)]
pub(crate) struct BlobQueue<'w> {
    writer: &'w PackWriter<'w>,
    tx: Sender<NewBlob>,
}

struct NewBlob {
    blob_type: BlobType,
    id: BlobId,
    raw: Vec<u8>,
}

struct SealedBlob {
    blob_type: BlobType,
    id: BlobId,
    raw_len: u32,
    stored: Vec<u8>,
}

struct SealedPack {
    id: PackId,
    bytes: Vec<u8>,
    index: IndexPack,
}

impl<'r> PackWriter<'r> {
    /// A writer that compresses at zstd `level`; on a dry run it seals and verifies everything
    /// but uploads and indexes nothing.
    /// Packs of about `bytes` instead of the repository's configured size (a per-backup
    /// choice: readers take packs of any size the format allows).
    pub(crate) fn with_target(mut self, bytes: usize) -> Self {
        self.target = bytes;
        self
    }

    pub(crate) fn new(
        repo: &'r Repository<Indexed>,
        abort: &'r Abort<'r>,
        level: i32,
        dry_run: bool,
    ) -> Self {
        Self {
            repo,
            abort,
            level,
            dry_run,
            target: repo.config().pack_size as usize,
            session: Mutex::new(HashSet::new()),
            bytes_added: AtomicU64::new(0),
            blobs_added: AtomicU64::new(0),
            packs: Mutex::new(Vec::new()),
        }
    }

    /// Starts `sealers` sealing threads, the packer and two uploaders in `scope` and returns
    /// the queue that feeds them.
    pub(crate) fn start<'scope>(
        &'r self,
        scope: &'scope Scope<'scope, '_>,
        sealers: usize,
    ) -> BlobQueue<'r>
    where
        'r: 'scope,
    {
        let (blob_tx, blob_rx) = bounded::<NewBlob>(sealers * 2);
        let (sealed_tx, sealed_rx) = bounded::<SealedBlob>(sealers * 2);
        // A rendezvous channel: a sealed pack waits in the packer until an uploader is free,
        // so at most one pack is being filled and one per uploader is in flight.
        let (pack_tx, pack_rx) = bounded::<SealedPack>(0);
        for _ in 0..sealers {
            let blob_rx = blob_rx.clone();
            let sealed_tx = sealed_tx.clone();
            let _ = scope.spawn(move || self.seal_blobs(&blob_rx, &sealed_tx));
        }
        drop((blob_rx, sealed_tx));
        let _ = scope.spawn(move || self.pack(sealed_rx, &pack_tx));
        for _ in 0..2 {
            let pack_rx = pack_rx.clone();
            let _ = scope.spawn(move || self.upload_packs(&pack_rx));
        }
        BlobQueue {
            writer: self,
            tx: blob_tx,
        }
    }

    /// Writes the index files for every uploaded pack (nothing on a dry run) and returns what
    /// was stored. Call it after the stages have ended (the scope they ran in has returned);
    /// returns the first error of any stage instead.
    pub(crate) fn finish(self) -> Result<Written> {
        if let Some(e) = self.abort.take_error() {
            return Err(e);
        }
        self.abort.cancel().check()?;
        let packs = self
            .packs
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let pack_ids = packs.iter().map(|p| p.id).collect();
        let indexes = if self.dry_run {
            Vec::new()
        } else {
            write_index_files(self.repo, packs)?
        };
        Ok(Written {
            packs: pack_ids,
            indexes,
            bytes_added: self.bytes_added.into_inner(),
            blobs_added: self.blobs_added.into_inner(),
        })
    }

    fn seal_blobs(&self, rx: &Receiver<NewBlob>, tx: &Sender<SealedBlob>) {
        for b in rx {
            if self.abort.failed() {
                continue;
            }
            match self.seal_blob(b.blob_type, b.id, &b.raw) {
                Ok(sealed) => {
                    if tx.send(sealed).is_err() {
                        self.abort.fail(Error::internal("packer stopped early"));
                    }
                }
                Err(e) => self.abort.fail(e),
            }
        }
    }

    /// Compresses and encrypts a blob, then checks that the result opens and decompresses to
    /// exactly `raw` (verify before upload, spec/09-invariants.md).
    fn seal_blob(&self, blob_type: BlobType, id: BlobId, raw: &[u8]) -> Result<SealedBlob> {
        let key = self.repo.master_key();
        let stored = envelope::encode_blob(key, blob_type, &id, raw, self.level)?;
        envelope::verify_blob(key, blob_type, &id, &stored, raw)?;
        Ok(SealedBlob {
            blob_type,
            id,
            raw_len: u32::try_from(raw.len())
                .map_err(|_| Error::internal("blob larger than 4 GiB"))?,
            stored,
        })
    }

    fn pack(&self, rx: Receiver<SealedBlob>, tx: &Sender<SealedPack>) {
        let target = self.target;
        let mut data = PackBuilder::new(BlobType::Data);
        let mut trees = PackBuilder::new(BlobType::Tree);
        let step = |b: &mut PackBuilder, force: bool| -> Result<()> {
            if force || b.full(target) {
                if let Some(p) = b.seal(self.repo)? {
                    tx.send(p)
                        .map_err(|_| Error::internal("upload pipeline closed early"))?;
                }
            }
            Ok(())
        };
        for blob in rx {
            if self.abort.failed() {
                continue;
            }
            let b = if blob.blob_type == BlobType::Data {
                &mut data
            } else {
                &mut trees
            };
            if let Err(e) = b.add(blob, target).and_then(|()| step(b, false)) {
                self.abort.fail(e);
            }
        }
        if !self.abort.failed() {
            if let Err(e) = step(&mut data, true).and_then(|()| step(&mut trees, true)) {
                self.abort.fail(e);
            }
        }
    }

    fn upload_packs(&self, rx: &Receiver<SealedPack>) {
        for pack in rx {
            if self.abort.failed() {
                continue;
            }
            let result = if self.dry_run {
                Ok(())
            } else {
                self.upload(&pack.id.to_hex(), &pack.bytes)
            };
            match result {
                Ok(()) => {
                    let stored: u64 = pack
                        .index
                        .blobs
                        .iter()
                        .map(|b| u64::from(b.stored_len))
                        .sum();
                    let _ = self.bytes_added.fetch_add(stored, Ordering::Relaxed);
                    let _ = self
                        .blobs_added
                        .fetch_add(pack.index.blobs.len() as u64, Ordering::Relaxed);
                    self.packs
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(pack.index);
                }
                Err(e) => self
                    .abort
                    .fail(e.context(format_args!("upload pack {}", pack.id))),
            }
        }
    }

    /// Uploads a pack and confirms that the stored object has its full length (a short or
    /// empty object reported as written is a known failure of some storage stacks). Transient
    /// failures are retried by the repository's retry layer.
    fn upload(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let backend = self.repo.backend();
        let mut attempt = 1;
        loop {
            backend.write(FileType::Pack, name, bytes)?;
            let stored = backend.size(FileType::Pack, name)?;
            if stored == bytes.len() as u64 {
                return Ok(());
            }
            if attempt == 3 || self.abort.cancel().is_cancelled() {
                return Err(Error::backend(
                    format!(
                        "pack {}: storage holds {stored} of {} bytes after the upload ({attempt} attempts)",
                        crate::id::short(name),
                        bytes.len()
                    ),
                    false,
                ));
            }
            attempt += 1;
        }
    }
}

impl BlobQueue<'_> {
    /// Queues a blob unless the index or this writer already has it. Returns its id.
    pub(crate) fn save(&self, blob_type: BlobType, raw: Vec<u8>) -> BlobId {
        let id = self.writer.repo.master_key().blob_id(&raw);
        self.save_with_id(blob_type, id, || raw);
        id
    }

    /// Like [`save`](Self::save) for a blob whose id the caller computed: `raw` is only called
    /// when the blob is new.
    pub(crate) fn save_with_id(
        &self,
        blob_type: BlobType,
        id: BlobId,
        raw: impl FnOnce() -> Vec<u8>,
    ) {
        let writer = self.writer;
        if writer.repo.index().contains(blob_type, &id) {
            return;
        }
        let fresh = writer
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id);
        if fresh
            && self
                .tx
                .send(NewBlob {
                    blob_type,
                    id,
                    raw: raw(),
                })
                .is_err()
        {
            writer
                .abort
                .fail(Error::internal("blob pipeline closed early"));
        }
    }
}

/// Appends sealed blobs to one pack of one blob type.
struct PackBuilder {
    blob_type: BlobType,
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl PackBuilder {
    fn new(blob_type: BlobType) -> Self {
        Self {
            blob_type,
            buf: Vec::new(),
            entries: Vec::new(),
        }
    }

    fn add(&mut self, blob: SealedBlob, target: usize) -> Result<()> {
        let stored_len = u32::try_from(blob.stored.len())
            .map_err(|_| Error::internal("blob larger than 4 GiB"))?;
        if self.buf.capacity() == 0 {
            // A pack ends at the first blob that reaches the target, so it never needs more than
            // the target plus one blob and its header: reserving that avoids reallocating (and
            // briefly holding) a second copy. Untouched reserved pages cost no memory.
            self.buf
                .reserve_exact(target + blob.stored.len().max(16 << 20) + (1 << 20));
        }
        self.buf.extend_from_slice(&blob.stored);
        self.entries.push(PackEntry {
            blob_type: blob.blob_type,
            id: blob.id,
            stored_len,
            raw_len: blob.raw_len,
        });
        Ok(())
    }

    fn full(&self, target: usize) -> bool {
        self.buf.len() >= target || self.entries.len() >= MAX_PACK_BLOBS
    }

    /// Seals the pack: header, trailer, id. Verifies the header decodes before it leaves.
    fn seal(&mut self, repo: &Repository<Indexed>) -> Result<Option<SealedPack>> {
        if self.entries.is_empty() {
            return Ok(None);
        }
        let key = repo.master_key();
        let header = pack_format::encode_header(key, &self.entries)?;
        let mut bytes = std::mem::take(&mut self.buf);
        bytes.extend_from_slice(&header);
        let entries = std::mem::take(&mut self.entries);
        let id = PackId(Id::hash(&bytes));
        let decoded = pack_format::decode_pack(key, &bytes, &format_args!("new pack {id}"))?;
        if decoded.len() != entries.len()
            || decoded.iter().zip(&entries).any(|(d, e)| d.entry != *e)
        {
            return Err(Error::internal(format!(
                "new pack {id} failed verification before upload"
            )));
        }
        let blobs = decoded
            .iter()
            .map(|d| IndexBlob {
                blob_type: self.blob_type,
                id: d.entry.id,
                offset: d.offset,
                stored_len: d.entry.stored_len,
                raw_len: d.entry.raw_len,
            })
            .collect();
        Ok(Some(SealedPack {
            id,
            index: IndexPack {
                id,
                size: bytes.len() as u64,
                blobs,
            },
            bytes,
        }))
    }
}

/// Writes index files listing `packs`, at most [`INDEX_FILE_BLOBS`] blobs per file.
fn write_index_files(repo: &Repository<Indexed>, packs: Vec<IndexPack>) -> Result<Vec<IndexId>> {
    let mut written = Vec::new();
    let mut file = IndexFile::default();
    let mut n = 0;
    for p in packs {
        n += p.blobs.len();
        file.packs.push(p);
        if n >= INDEX_FILE_BLOBS {
            written.push(repo.save_index(&std::mem::take(&mut file))?);
            n = 0;
        }
    }
    if !file.packs.is_empty() {
        written.push(repo.save_index(&file)?);
    }
    Ok(written)
}
