//! The collector: assembles tree blobs bottom-up from the walker's event stream and the
//! readers' results, counts the snapshot summary and records skipped entries.

use std::collections::HashMap;
use std::path::PathBuf;

use crossbeam_channel::Receiver;

use super::{EntryStatus, Event, FileResult};
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::SnapshotSummary;
use crate::format::tree::{Node, TreeEncoder};
use crate::format::BlobType;
use crate::id::BlobId;
use crate::pack::{Abort, BlobQueue};
use crate::progress::{Progress, ProgressEvent};

/// What the collector hands back: root tree, counters, skipped entries.
pub(super) type Collected = (BlobId, SnapshotSummary, Vec<(PathBuf, String)>);

/// A directory being assembled: its own node (None for the root) and its entries so far,
/// already encoded (the walker emits them in name order).
pub(super) struct Frame {
    node: Option<Node>,
    nodes: TreeEncoder,
}

pub(super) struct Collector<'s, 'r> {
    pub(super) abort: &'s Abort<'r>,
    pub(super) progress: &'s dyn Progress,
    pub(super) queue: BlobQueue<'s>,
    pub(super) results: Receiver<FileResult>,
    pub(super) early: HashMap<u64, FileResult>,
    pub(super) stats: SnapshotSummary,
    pub(super) skipped: Vec<(PathBuf, String)>,
}

impl Collector<'_, '_> {
    fn wait_for(&mut self, ticket: u64) -> Result<FileResult> {
        if let Some(r) = self.early.remove(&ticket) {
            return Ok(r);
        }
        loop {
            let r = self
                .results
                .recv()
                .map_err(|_| Error::internal("file readers stopped early"))?;
            if r.ticket == ticket {
                return Ok(r);
            }
            let _ = self.early.insert(r.ticket, r);
        }
    }

    pub(super) fn run(&mut self, events: &Receiver<Event>) -> Result<BlobId> {
        let mut stack = vec![Frame {
            node: None,
            nodes: TreeEncoder::default(),
        }];
        for ev in events {
            if self.abort.failed() {
                break;
            }
            match ev {
                Event::Enter(node) => stack.push(Frame {
                    node: Some(node),
                    nodes: TreeEncoder::default(),
                }),
                Event::Leave => {
                    let frame = stack
                        .pop()
                        .ok_or_else(|| Error::internal("unbalanced walk"))?;
                    let mut node = frame
                        .node
                        .ok_or_else(|| Error::internal("unbalanced walk"))?;
                    node.subtree = Some(self.save_tree(frame.nodes)?);
                    self.stats.dirs += 1;
                    stack
                        .last_mut()
                        .ok_or_else(|| Error::internal("unbalanced walk"))?
                        .nodes
                        .push(&node)?;
                }
                Event::Entry(node, status) => {
                    match status {
                        Some(EntryStatus::Unchanged) => {
                            self.stats.files_unmodified += 1;
                            self.stats.bytes_total += node.size;
                        }
                        Some(_) => {}
                        None => self.stats.others += 1,
                    }
                    stack
                        .last_mut()
                        .ok_or_else(|| Error::internal("unbalanced walk"))?
                        .nodes
                        .push(&node)?;
                }
                Event::File(mut node, status, ticket) => {
                    let r = self.wait_for(ticket)?;
                    match r.result {
                        Ok(done) => {
                            node.content = done.content;
                            node.size = done.bytes;
                            self.stats.bytes_total += done.bytes;
                            match status {
                                EntryStatus::New => self.stats.files_new += 1,
                                _ => self.stats.files_changed += 1,
                            }
                            stack
                                .last_mut()
                                .ok_or_else(|| Error::internal("unbalanced walk"))?
                                .nodes
                                .push(&node)?;
                        }
                        Err(e) if e.kind() == ErrorKind::Cancelled => return Err(e),
                        Err(e) => {
                            self.progress.event(&ProgressEvent::Skipped {
                                path: &r.path,
                                error: &e,
                            });
                            self.skipped.push((r.path, e.to_string()));
                        }
                    }
                }
            }
        }
        if self.abort.failed() {
            return Err(Error::cancelled());
        }
        if stack.len() != 1 {
            return Err(Error::internal("walk ended inside a directory"));
        }
        let root = stack.pop().map(|f| f.nodes).unwrap_or_default();
        self.save_tree(root)
    }

    fn save_tree(&mut self, nodes: TreeEncoder) -> Result<BlobId> {
        Ok(self.queue.save(BlobType::Tree, nodes.finish()))
    }
}
