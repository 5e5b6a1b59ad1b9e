//! Reading blobs out of packs: the one read path of the repository.
//!
//! Every blob that leaves a pack goes through here: `Repository::read_blob` (trees for
//! listings, backup's parent trees, FUSE), restore (runs of data blobs), and `check
//! --read-data` (each blob of a whole pack). Each blob is decrypted, its keyed id verified and
//! its plaintext decompressed by [`PackReader::decode`]; a failure is typed corruption naming
//! the blob (and the pack where the caller knows it).
//!
//! **Runs.** Restore asks for many blobs of one pack at once; [`runs`] groups them, sorted by
//! offset, into runs of nearby blobs read with one range request each: a gap over
//! [`MAX_GAP`] bytes splits a run, and a run stops growing once it spans [`MAX_READ_RUN`]
//! bytes, so memory per run stays bounded whatever the pack size.
//!
//! **Cache.** A reader made with a cache reads tree blobs through it (whole tree packs are
//! kept locally, spec/11-cache.md) and falls back to the backend when a cached copy does not
//! decode; data blobs always come from the backend. `check` judges the backend's bytes, so it
//! reads through a repository opened without its cache (`Repository::uncached`).

use crate::backend::{Backend, FileType};
use crate::cache::Cache;
use crate::crypto::MasterKey;
use crate::error::{CorruptionKind, Error, Result};
use crate::format::envelope;
use crate::format::BlobType;
use crate::id::{BlobId, PackId};

/// A run stops growing once it spans this many bytes.
pub(crate) const MAX_READ_RUN: u64 = 4 << 20;

/// A gap between two blobs over this many bytes starts a new run.
pub(crate) const MAX_GAP: u64 = 1 << 20;

/// Where one blob is in its pack, and what it must decode to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlobSpan {
    /// Data or tree.
    pub blob_type: BlobType,
    /// The blob's keyed id, checked against its plaintext.
    pub id: BlobId,
    /// Offset of its envelope in the pack.
    pub offset: u32,
    /// Length of its envelope.
    pub stored_len: u32,
    /// Length of its plaintext.
    pub raw_len: u32,
}

/// Reads and decodes blobs of packs through one backend, key and optional cache.
#[derive(Clone, Copy)]
pub(crate) struct PackReader<'a> {
    backend: &'a dyn Backend,
    key: &'a MasterKey,
    cache: Option<&'a Cache>,
}

impl<'a> PackReader<'a> {
    /// A reader over `backend`, reading tree blobs through `cache` when there is one.
    pub(crate) fn new(
        backend: &'a dyn Backend,
        key: &'a MasterKey,
        cache: Option<&'a Cache>,
    ) -> Self {
        PackReader {
            backend,
            key,
            cache,
        }
    }

    /// Decrypts, verifies and decompresses one blob's stored bytes. The error names the blob;
    /// callers that know the pack add it as context.
    pub(crate) fn decode(&self, span: &BlobSpan, stored: &[u8]) -> Result<Vec<u8>> {
        envelope::decode_blob(self.key, span.blob_type, &span.id, stored, span.raw_len)
    }

    /// Reads one blob of `pack`: tree blobs through the cache when there is one, everything
    /// else with one range request to the backend.
    pub(crate) fn read_blob(&self, pack: &PackId, span: &BlobSpan) -> Result<Vec<u8>> {
        let pack_name = pack.to_hex();
        let from_backend = || {
            let bytes = self.backend.read_range(
                FileType::Pack,
                &pack_name,
                u64::from(span.offset),
                span.stored_len,
            )?;
            self.decode(span, &bytes)
                .map_err(|e| e.context(format_args!("pack {pack}")))
        };
        match (self.cache, span.blob_type) {
            (Some(cache), BlobType::Tree) => {
                let bytes = cache.read_pack_range(
                    self.backend,
                    &pack_name,
                    span.offset,
                    span.stored_len,
                )?;
                match self.decode(span, &bytes) {
                    Ok(raw) => Ok(raw),
                    // A damaged cache copy must not pass for a damaged repository.
                    Err(_) => {
                        cache.remove(FileType::Pack, &pack_name);
                        from_backend()
                    }
                }
            }
            _ => from_backend(),
        }
    }

    /// Reads one run of blobs of `pack` (from [`runs`]) with one range request, and hands
    /// each blob's plaintext to `each` in the run's order, stopping at the first error.
    pub(crate) fn read_run<T>(
        &self,
        pack: &PackId,
        run: &[T],
        span: impl Fn(&T) -> BlobSpan,
        mut each: impl FnMut(&T, Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let Some(first) = run.first() else {
            return Ok(());
        };
        let start = u64::from(span(first).offset);
        let end = run
            .iter()
            .map(|b| {
                let s = span(b);
                u64::from(s.offset) + u64::from(s.stored_len)
            })
            .max()
            .unwrap_or(start);
        let bytes = self
            .backend
            .read_range(
                FileType::Pack,
                &pack.to_hex(),
                start,
                u32::try_from(end - start).map_err(|_| Error::internal("read run over 4 GiB"))?,
            )
            .map_err(|e| e.context(format_args!("pack {pack}")))?;
        for b in run {
            let s = span(b);
            let at = usize::try_from(u64::from(s.offset) - start)
                .map_err(|_| Error::internal("read run over the address space"))?;
            let stored = at
                .checked_add(s.stored_len as usize)
                .and_then(|stop| bytes.get(at..stop))
                .ok_or_else(|| {
                    Error::corrupt(
                        CorruptionKind::Truncated,
                        format!("pack {pack}"),
                        "shorter than the index says",
                    )
                })?;
            let raw = self
                .decode(&s, stored)
                .map_err(|e| e.context(format_args!("pack {pack}")))?;
            each(b, raw)?;
        }
        Ok(())
    }
}

/// Groups blobs of one pack into runs read with one request each: sorted by offset, a gap
/// over [`MAX_GAP`] or a run spanning [`MAX_READ_RUN`] bytes starts the next run.
pub(crate) fn runs<T>(mut blobs: Vec<T>, span: impl Fn(&T) -> BlobSpan) -> Vec<Vec<T>> {
    blobs.sort_by_key(|b| span(b).offset);
    let mut runs = Vec::new();
    let mut current: Vec<T> = Vec::new();
    let (mut start, mut end) = (0u64, 0u64);
    for b in blobs {
        let s = span(&b);
        let (o, l) = (u64::from(s.offset), u64::from(s.stored_len));
        if !current.is_empty() && (o > end.saturating_add(MAX_GAP) || end - start >= MAX_READ_RUN) {
            runs.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            start = o;
            end = o;
        }
        end = end.max(o + l);
        current.push(b);
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(offset: u32, stored_len: u32) -> BlobSpan {
        BlobSpan {
            blob_type: BlobType::Data,
            id: BlobId(crate::id::Id::hash(&offset.to_le_bytes())),
            offset,
            stored_len,
            raw_len: stored_len,
        }
    }

    fn offsets(runs: &[Vec<BlobSpan>]) -> Vec<Vec<u32>> {
        runs.iter()
            .map(|r| r.iter().map(|s| s.offset).collect())
            .collect()
    }

    #[test]
    fn runs_sort_by_offset_and_coalesce_nearby_blobs() {
        let blobs = vec![span(200, 100), span(0, 100), span(100, 100)];
        assert_eq!(offsets(&runs(blobs, |s| *s)), vec![vec![0, 100, 200]]);
    }

    #[test]
    fn runs_split_at_a_gap_over_the_limit() {
        let gap = u32::try_from(MAX_GAP).unwrap();
        let blobs = vec![span(0, 10), span(10 + gap, 10), span(21 + 2 * gap, 10)];
        assert_eq!(
            offsets(&runs(blobs, |s| *s)),
            vec![vec![0, 10 + gap], vec![21 + 2 * gap]]
        );
    }

    #[test]
    fn runs_stop_growing_at_max_read_run() {
        let mib = 1u32 << 20;
        let blobs: Vec<BlobSpan> = (0..10).map(|i| span(i * mib, mib)).collect();
        let got = runs(blobs, |s| *s);
        assert!(got.len() > 1);
        for run in &got {
            let first = u64::from(run[0].offset);
            let last = run.last().unwrap();
            let span_bytes = u64::from(last.offset) + u64::from(last.stored_len) - first;
            assert!(span_bytes <= MAX_READ_RUN + u64::from(mib), "{span_bytes}");
        }
        assert_eq!(got.iter().map(Vec::len).sum::<usize>(), 10);
    }

    /// A pack of three data blobs with a gap between the second and the third, in memory.
    fn pack_of_three() -> (
        crate::backend::MemoryBackend,
        MasterKey,
        PackId,
        Vec<BlobSpan>,
        Vec<Vec<u8>>,
    ) {
        let key = MasterKey::from_bytes(&[7u8; crate::crypto::MASTER_KEY_LEN]);
        let raws: Vec<Vec<u8>> = vec![b"first".to_vec(), vec![0u8; 300], b"third blob".to_vec()];
        let mut pack = Vec::new();
        let mut spans = Vec::new();
        for (i, raw) in raws.iter().enumerate() {
            if i == 2 {
                pack.extend_from_slice(&[0xAA; 64]);
            }
            let id = key.blob_id(raw);
            let stored = envelope::encode_blob(&key, BlobType::Data, &id, raw, 3).unwrap();
            spans.push(BlobSpan {
                blob_type: BlobType::Data,
                id,
                offset: u32::try_from(pack.len()).unwrap(),
                stored_len: u32::try_from(stored.len()).unwrap(),
                raw_len: u32::try_from(raw.len()).unwrap(),
            });
            pack.extend_from_slice(&stored);
        }
        let pack_id = PackId(crate::id::Id::hash(&pack));
        let backend = crate::backend::MemoryBackend::new();
        backend
            .write(FileType::Pack, &pack_id.to_hex(), &pack)
            .unwrap();
        (backend, key, pack_id, spans, raws)
    }

    #[test]
    fn read_run_decodes_every_blob_of_a_run_in_order() {
        let (backend, key, pack, spans, raws) = pack_of_three();
        let reader = PackReader::new(&backend, &key, None);
        let runs = runs(spans.clone(), |s| *s);
        assert_eq!(runs.len(), 1);
        let mut got = Vec::new();
        reader
            .read_run(
                &pack,
                &runs[0],
                |s| *s,
                |s, raw| {
                    got.push((s.id, raw));
                    Ok(())
                },
            )
            .unwrap();
        let want: Vec<(BlobId, Vec<u8>)> = spans.iter().map(|s| s.id).zip(raws.clone()).collect();
        assert_eq!(got, want);
        for (span, raw) in spans.iter().zip(&raws) {
            assert_eq!(&reader.read_blob(&pack, span).unwrap(), raw);
        }
    }

    #[test]
    fn read_run_reports_a_wrong_id_as_corruption_naming_blob_and_pack() {
        let (backend, key, pack, mut spans, _) = pack_of_three();
        let reader = PackReader::new(&backend, &key, None);
        let wrong = BlobId(crate::id::Id::hash(b"not this blob"));
        spans[1].id = wrong;
        let err = reader
            .read_run(&pack, &spans, |s| *s, |_, _| Ok(()))
            .unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Corrupt);
        let msg = err.to_string();
        assert!(msg.contains(&format!("{wrong}")), "{msg}");
        assert!(msg.contains(&format!("pack {pack}")), "{msg}");
        let err = reader.read_blob(&pack, &spans[1]).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Corrupt);
    }

    #[test]
    fn read_run_past_the_end_of_the_pack_is_an_error() {
        let (backend, key, pack, mut spans, _) = pack_of_three();
        let reader = PackReader::new(&backend, &key, None);
        spans[2].stored_len += 1000;
        let err = reader
            .read_run(&pack, &spans, |s| *s, |_, _| Ok(()))
            .unwrap_err();
        assert!(err.to_string().contains(&format!("pack {pack}")), "{err}");
    }

    #[test]
    fn runs_of_nothing_is_empty() {
        assert!(runs(Vec::<BlobSpan>::new(), |s| *s).is_empty());
    }
}
