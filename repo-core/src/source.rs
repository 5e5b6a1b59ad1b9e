//! Where a backup reads from: the [`Source`] seam.
//!
//! A backup is a pipeline that does not care where entries come from: a source walks its tree
//! into a [`Sink`] (depth first, each directory's entries in byte order of their names),
//! handing over each entry as a tree [`Node`] and each regular file's content as a
//! [`SourceFile`] that a reader thread chunks later. The sink owns everything that is the
//! same for every source: the lockstep with the parent snapshot (so an unchanged file is never
//! read), the event stream to the tree collector, the file jobs for the readers, and the
//! record of what was skipped.
//!
//! The local file system ([`local`]) is the first source. Standard input, a command's output,
//! a tar stream and another repository's snapshot are the next ones; each is a walk that makes
//! nodes, with none of the pipeline to copy. The trait is crate-private until a second source
//! lands: its sink methods are the part most likely to change when one does.

pub(crate) mod local;

use std::io::Read;

pub(crate) use crate::archiver::Sink;
use crate::progress::OpCtx;

/// What a backup reads: a tree of entries.
pub(crate) trait Source: Sync {
    /// The paths the snapshot records as what it holds: absolute, as bytes.
    fn paths(&self) -> &[Vec<u8>];

    /// Counts the files and bytes a walk would read and reports them as progress totals
    /// (phase [`Phase::Scan`](crate::Phase::Scan)), so progress can show an ETA; runs beside
    /// the walk, and returns early once `stop()` is true. A source that cannot know its size
    /// in advance keeps this default, which reports nothing.
    fn scan(&self, _ctx: &OpCtx<'_>, _stop: &dyn Fn() -> bool) {}

    /// Walks the whole source into `sink`. Returns early when a sink call says the backup
    /// stopped (it failed or was cancelled). What cannot be read is reported to the sink
    /// ([`Sink::skip`]) and left out; only what endangers the snapshot fails it
    /// ([`Sink::fail`]).
    fn walk(&self, sink: &mut Sink<'_>);
}

/// The content of one regular file, read once from start to end by a reader thread.
pub(crate) trait SourceFile: Read + Send {
    /// Called after the content was read to its end, `len` bytes: whether the file changed
    /// while it was read (then the snapshot holds the bytes read, and the backup warns).
    fn changed_while_read(&self, len: u64) -> bool;
}
