//! `check`: verifies that every snapshot can be restored, and with `read_data` that every byte
//! stored is intact.
//!
//! Structure: key files parse, every index entry points into an existing pack of the recorded
//! size, every snapshot decodes, every tree is readable and every blob it references is
//! indexed. Packs that no index lists are reported apart (they are what an interrupted backup
//! leaves, and harmless). Data: every pack is downloaded, its hash checked against its name,
//! its header checked against the index, and every blob decrypted and re-hashed.
//!
//! Check judges the repository, never the local cache: a repository opened with a cache is
//! opened again without one, its index loaded afresh, and every file check reads (index,
//! snapshot, key files, tree blobs, packs) comes from the backend (spec/11-cache.md).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::FileType;
use crate::error::{ErrorKind, Result};
use crate::format::keyfile;
use crate::format::pack;
use crate::format::tree::NodeKind;
use crate::format::BlobType;
use crate::id::{BlobId, Id, PackId};
use crate::lock::LockMode;
use crate::pack::reader::BlobSpan;
use crate::progress::{OpCtx, Phase, ProgressEvent};
use crate::repository::{Indexed, Repository};

/// Options of [`Repository::check`].
#[non_exhaustive]
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Download and verify every pack.
    pub read_data: bool,
    /// How long to wait for a conflicting lock.
    pub lock_wait: std::time::Duration,
}

/// One problem found by `check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// A key file does not parse.
    KeyFile {
        /// Its name.
        name: String,
        /// What is wrong.
        error: String,
    },
    /// An index file could not be read.
    IndexFile {
        /// Its name.
        name: String,
        /// What is wrong.
        error: String,
    },
    /// The index lists a pack that does not exist.
    MissingPack {
        /// The pack.
        pack: String,
    },
    /// A pack's length differs from the index.
    PackSize {
        /// The pack.
        pack: String,
        /// Length the index records.
        expected: u64,
        /// Length found.
        found: u64,
    },
    /// A snapshot file could not be read.
    Snapshot {
        /// Its id.
        snapshot: String,
        /// What is wrong.
        error: String,
    },
    /// A tree could not be read.
    Tree {
        /// Snapshot it belongs to.
        snapshot: String,
        /// Path of the directory.
        path: String,
        /// Tree blob id.
        tree: String,
        /// What is wrong.
        error: String,
    },
    /// A file's recorded size is not the total length of its content blobs (restore refuses
    /// such a file).
    FileSize {
        /// Snapshot.
        snapshot: String,
        /// File path.
        path: String,
        /// Size the tree records.
        size: u64,
        /// Total length of its content blobs, from the index.
        content: u64,
    },
    /// A file references a blob that is not indexed.
    MissingBlob {
        /// Snapshot.
        snapshot: String,
        /// File path.
        path: String,
        /// Blob id.
        blob: String,
    },
    /// A pack's bytes are damaged.
    PackData {
        /// The pack.
        pack: String,
        /// What is wrong.
        error: String,
    },
}

/// What `check` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Problems; empty means the repository is healthy.
    pub problems: Vec<Problem>,
    /// Packs that no index lists (left by interrupted backups; harmless).
    pub unreferenced_packs: Vec<String>,
    /// Temporary files of writes that never finished (a backup killed mid-upload), relative to
    /// the repository (`data/ab/.tmp-…`): not damage, since no snapshot refers to them, so they
    /// are warnings and not [`Problem`]s. Safe to delete when no cairn process is writing.
    pub temporary_files: Vec<String>,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Distinct trees read.
    pub trees: u64,
    /// Packs listed by the index.
    pub packs: u64,
    /// Blobs in the index.
    pub blobs: u64,
    /// Packs downloaded and verified (with `read_data`).
    pub packs_read: u64,
    /// Bytes downloaded (with `read_data`).
    pub bytes_read: u64,
}

impl CheckReport {
    /// True when no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A blob the index places in a pack: type, id, offset, stored and raw length.
type ExpectedBlob = (BlobType, BlobId, u32, u32, u32);

impl Repository<Indexed> {
    /// Checks the repository. Returns `Err` only when the check cannot run at all.
    ///
    /// The snapshots checked are those that existed when the index was loaded
    /// ([`Repository::into_indexed`]); backups running alongside (they take shared locks too)
    /// may save newer ones, which the next check covers.
    ///
    /// A repository with a local cache is checked through a fresh, uncached view of it (its
    /// index loaded again from the backend): cached copies are proven equal to what the
    /// repository held when they were fetched, not to what it holds now.
    pub fn check(&self, ctx: &OpCtx<'_>, opts: &CheckOptions) -> Result<CheckReport> {
        if self.has_cache() {
            return self.uncached(ctx)?.check(ctx, opts);
        }
        let _lock = self.lock(LockMode::Shared, "check", opts.lock_wait)?;
        let mut report = CheckReport::default();
        ctx.progress.event(&ProgressEvent::PhaseStarted {
            phase: Phase::CheckStructure,
            total_items: None,
            total_bytes: None,
        });
        for (name, _) in self.backend().list(FileType::Key)? {
            let r = self.backend().read(FileType::Key, &name).and_then(|bytes| {
                if Id::from_hex(&name).ok() != Some(Id::hash(&bytes)) {
                    return Err(crate::Error::corrupt(
                        crate::CorruptionKind::IdMismatch,
                        format!("key {name}"),
                        "content does not match its name",
                    ));
                }
                keyfile::decode_header(&bytes, &format_args!("key {name}")).map(|_| ())
            });
            if let Err(e) = r {
                report.problems.push(Problem::KeyFile {
                    name,
                    error: e.to_string(),
                });
            }
        }
        for (name, error) in self.skipped_index_files() {
            report.problems.push(Problem::IndexFile {
                name: name.clone(),
                error: error.clone(),
            });
        }
        let stored: HashMap<String, u64> =
            self.backend().list(FileType::Pack)?.into_iter().collect();
        let mut indexed = HashSet::new();
        for p in self.index().packs() {
            let name = p.id.to_hex();
            match stored.get(&name) {
                None => report
                    .problems
                    .push(Problem::MissingPack { pack: name.clone() }),
                Some(&size) if size != p.size => report.problems.push(Problem::PackSize {
                    pack: name.clone(),
                    expected: p.size,
                    found: size,
                }),
                Some(_) => {}
            }
            let _ = indexed.insert(name);
        }
        report.unreferenced_packs = stored
            .keys()
            .filter(|n| !indexed.contains(*n))
            .cloned()
            .collect();
        report.unreferenced_packs.sort();
        report.temporary_files = self.backend().temporary_files()?;
        report.packs = self.index().packs().len() as u64;
        report.blobs = self.index().len() as u64;

        // Snapshots and their trees; each distinct tree is read once. Only the snapshots that
        // existed when the index was loaded: one saved since by a concurrent backup may
        // reference index files written after that load, and is not damaged for it.
        let mut seen_trees: HashSet<BlobId> = HashSet::new();
        for name in self.snapshots_covered().iter().cloned() {
            ctx.cancel.check()?;
            let snap = match crate::id::SnapshotId::from_hex(&name)
                .and_then(|id| self.load_snapshot(&id))
            {
                Ok(s) => s,
                // Listed when the index was loaded, gone now: forgotten since (only forget
                // deletes snapshot files), so there is nothing left of it to check.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => {
                    report.problems.push(Problem::Snapshot {
                        snapshot: name,
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            report.snapshots += 1;
            let sid = snap.id.to_hex();
            let mut stack = vec![(snap.meta.tree, "/".to_string())];
            while let Some((tree_id, path)) = stack.pop() {
                if !seen_trees.insert(tree_id) {
                    continue;
                }
                ctx.cancel.check()?;
                let tree = match self.read_tree(&tree_id) {
                    Ok(t) => t,
                    Err(e) => {
                        report.problems.push(Problem::Tree {
                            snapshot: sid.clone(),
                            path,
                            tree: tree_id.to_hex(),
                            error: e.to_string(),
                        });
                        continue;
                    }
                };
                report.trees += 1;
                for node in &tree.nodes {
                    let child = format!("{}/{}", path.trim_end_matches('/'), node.name_lossy());
                    match node.kind {
                        NodeKind::Dir => {
                            if let Some(sub) = node.subtree {
                                stack.push((sub, child));
                            }
                        }
                        NodeKind::File => {
                            let mut content = Some(0u64);
                            for id in &node.content {
                                match self.index().lookup(BlobType::Data, id) {
                                    Some(loc) => {
                                        content = content
                                            .map(|c| c.saturating_add(u64::from(loc.raw_len)));
                                    }
                                    None => {
                                        content = None;
                                        report.problems.push(Problem::MissingBlob {
                                            snapshot: sid.clone(),
                                            path: child.clone(),
                                            blob: id.to_hex(),
                                        });
                                    }
                                }
                            }
                            // The same rule restore applies before it writes anything.
                            if let Some(content) = content.filter(|&c| c != node.size) {
                                report.problems.push(Problem::FileSize {
                                    snapshot: sid.clone(),
                                    path: child.clone(),
                                    size: node.size,
                                    content,
                                });
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        ctx.progress.event(&ProgressEvent::PhaseFinished {
            phase: Phase::CheckStructure,
        });
        if opts.read_data {
            self.check_data(ctx, &stored, &mut report)?;
        }
        self.report_cache_problem(ctx);
        Ok(report)
    }

    fn check_data(
        &self,
        ctx: &OpCtx<'_>,
        stored: &HashMap<String, u64>,
        report: &mut CheckReport,
    ) -> Result<()> {
        // Expected contents of each pack, from the index.
        let mut expected: HashMap<PackId, Vec<ExpectedBlob>> = HashMap::new();
        for (t, id, loc) in self.index().iter() {
            expected.entry(loc.pack).or_default().push((
                t,
                id,
                loc.offset,
                loc.stored_len,
                loc.raw_len,
            ));
        }
        let packs: Vec<PackId> = self
            .index()
            .packs()
            .iter()
            .filter(|p| stored.contains_key(&p.id.to_hex()))
            .map(|p| p.id)
            .collect();
        let total: u64 = self.index().packs().iter().map(|p| p.size).sum();
        ctx.progress.event(&ProgressEvent::PhaseStarted {
            phase: Phase::CheckData,
            total_items: Some(packs.len() as u64),
            total_bytes: Some(total),
        });
        let problems = Mutex::new(Vec::new());
        let bytes_read = AtomicU64::new(0);
        let key = self.master_key();
        // The whole pack is read (and hashed) here; each blob is decoded by the pack reader.
        let reader = self.pack_reader();
        packs.par_iter().try_for_each(|pack_id| -> Result<()> {
            ctx.cancel.check()?;
            let name = pack_id.to_hex();
            let fail = |error: String| {
                problems
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(Problem::PackData {
                        pack: name.clone(),
                        error,
                    })
            };
            let bytes = match self.backend().read(FileType::Pack, &name) {
                Ok(b) => b,
                Err(e) => {
                    fail(e.to_string());
                    return Ok(());
                }
            };
            let _ = bytes_read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            ctx.progress.event(&ProgressEvent::Advanced {
                phase: Phase::CheckData,
                items: 1,
                bytes: bytes.len() as u64,
            });
            if PackId(Id::hash(&bytes)) != *pack_id {
                fail("content does not match its name (bytes changed on storage)".to_string());
                return Ok(());
            }
            let header = match pack::decode_pack(key, &bytes, &format_args!("pack {pack_id}")) {
                Ok(h) => h,
                Err(e) => {
                    fail(e.to_string());
                    return Ok(());
                }
            };
            let in_header: HashMap<BlobId, (u32, u32, u32)> = header
                .iter()
                .map(|l| (l.entry.id, (l.offset, l.entry.stored_len, l.entry.raw_len)))
                .collect();
            for &(t, id, offset, stored_len, raw_len) in
                expected.get(pack_id).map(Vec::as_slice).unwrap_or(&[])
            {
                if in_header.get(&id) != Some(&(offset, stored_len, raw_len)) {
                    fail(format!(
                        "{} blob {id}: the index and the pack header disagree",
                        t.as_str()
                    ));
                }
            }
            // Blobs in parallel too: with a few dozen packs of 16 MiB, the last packs would
            // otherwise be decoded by one core while the other idles.
            header.par_iter().for_each(|l| {
                let start = l.offset as usize;
                let blob = &bytes[start..start + l.entry.stored_len as usize];
                let span = BlobSpan {
                    blob_type: l.entry.blob_type,
                    id: l.entry.id,
                    offset: l.offset,
                    stored_len: l.entry.stored_len,
                    raw_len: l.entry.raw_len,
                };
                if let Err(e) = reader.decode(&span, blob) {
                    fail(e.to_string());
                }
            });
            Ok(())
        })?;
        report.problems.extend(
            problems
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        report.packs_read = packs.len() as u64;
        report.bytes_read = bytes_read.load(Ordering::Relaxed);
        ctx.progress.event(&ProgressEvent::PhaseFinished {
            phase: Phase::CheckData,
        });
        Ok(())
    }
}
