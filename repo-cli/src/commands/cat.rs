//! `cairn cat`: print one decrypted repository object.
//!
//! Structured objects (config, snapshot, index, tree, key header) print as indented JSON with
//! ids in hex; `blob` writes a data blob's raw bytes to stdout; `masterkey` prints the master
//! key in hex (store it safely: it opens the repository without any password).

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use repo_core::{
    BlobId, BlobType, FileType, Id, IndexId, Indexed, KeyId, Repository, SnapshotFilter,
};
use serde_json::{json, Value};

use super::App;
use crate::progress::CliProgress;
use crate::{output, time, EXIT_OK};

/// Flags of `cairn cat`.
#[derive(Debug, Args)]
pub struct CatArgs {
    #[command(subcommand)]
    pub object: CatObject,
}

/// The object to print.
#[derive(Debug, Subcommand)]
pub enum CatObject {
    /// The repository config.
    Config,
    /// A snapshot (id, id prefix or `latest`).
    Snapshot {
        /// Snapshot id.
        id: String,
    },
    /// An index file (id or id prefix).
    Index {
        /// Index file id.
        id: String,
    },
    /// A tree blob: its full id, or SNAPSHOT[:PATH] for a directory of a snapshot.
    Tree {
        /// Tree id or SNAPSHOT[:PATH].
        id: String,
    },
    /// The raw bytes of a data blob (full id).
    Blob {
        /// Blob id.
        id: String,
    },
    /// The cleartext header of a key file (id or id prefix).
    Key {
        /// Key file id.
        id: String,
    },
    /// The master key in hex. Anyone holding it can read the repository.
    Masterkey,
}

/// Runs `cairn cat`.
pub fn run(app: &App, args: &CatArgs) -> Result<u8> {
    let progress = CliProgress::new(&app.global, false);
    let repo = app.open()?;
    let ctx = app.ctx(&progress);
    let value = match &args.object {
        CatObject::Config => {
            let c = repo.config();
            json!({
                "id": Id(c.repo_id).to_hex(),
                "chunk_min": c.chunk_min,
                "chunk_avg": c.chunk_avg,
                "chunk_max": c.chunk_max,
                "compression_level": c.compression_level,
                "pack_size": c.pack_size,
            })
        }
        CatObject::Snapshot { id } => {
            output::snapshot_json(&repo.find_snapshot(&ctx, id, &SnapshotFilter::default())?)
        }
        CatObject::Index { id } => {
            let id = IndexId(repo.find_file(FileType::Index, id)?);
            let file = repo.load_index_file(&id)?;
            let packs: Vec<Value> = file
                .packs
                .iter()
                .map(|p| {
                    let blobs: Vec<Value> = p
                        .blobs
                        .iter()
                        .map(|b| {
                            json!({
                                "type": b.blob_type.as_str(),
                                "id": b.id.to_hex(),
                                "offset": b.offset,
                                "stored_len": b.stored_len,
                                "raw_len": b.raw_len,
                            })
                        })
                        .collect();
                    json!({"id": p.id.to_hex(), "size": p.size, "blobs": blobs})
                })
                .collect();
            let supersedes: Vec<String> = file.supersedes.iter().map(IndexId::to_hex).collect();
            json!({"id": id.to_hex(), "supersedes": supersedes, "packs": packs})
        }
        CatObject::Key { id } => {
            let id = KeyId(repo.find_file(FileType::Key, id)?);
            let h = repo.load_key_header(&id)?;
            json!({
                "id": id.to_hex(),
                "kdf": {
                    "algorithm": "argon2id",
                    "m_cost_kib": h.kdf.m_cost_kib,
                    "t_cost": h.kdf.t_cost,
                    "p_cost": h.kdf.p_cost,
                },
                "salt": output::hex(&h.salt),
                "created": time::format_rfc3339(h.created_unix.saturating_mul(1_000_000_000)),
            })
        }
        CatObject::Masterkey => {
            let key = repo.export_master_key();
            json!({"master_key": output::hex(key.as_slice())})
        }
        CatObject::Tree { id } => {
            let repo = repo.into_indexed(&ctx)?;
            let tree_id = resolve_tree(&repo, app, &progress, id)?;
            let tree = repo.read_tree(&tree_id)?;
            let nodes: Vec<Value> = tree
                .nodes
                .iter()
                .map(|n| output::node_json(n, None))
                .collect();
            json!({"id": tree_id.to_hex(), "nodes": nodes})
        }
        CatObject::Blob { id } => {
            let repo = repo.into_indexed(&ctx)?;
            let id = BlobId::from_hex(id)?;
            let bytes = if repo.index().contains(BlobType::Data, &id) {
                repo.read_blob(BlobType::Data, &id)?
            } else {
                repo.read_blob(BlobType::Tree, &id)?
            };
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()?;
            return Ok(EXIT_OK);
        }
    };
    output::json_pretty(&value)?;
    Ok(EXIT_OK)
}

/// A tree id from a full id or `SNAPSHOT[:PATH]`.
fn resolve_tree(
    repo: &Repository<Indexed>,
    app: &App,
    progress: &CliProgress,
    spec: &str,
) -> Result<BlobId> {
    if spec.len() == 64 && spec.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(BlobId::from_hex(spec)?);
    }
    let (snap, path) = spec.split_once(':').unwrap_or((spec, "/"));
    let snap = repo.find_snapshot(&app.ctx(progress), snap, &SnapshotFilter::default())?;
    let node = repo.node_at(
        &snap.meta.tree,
        Path::new(if path.is_empty() { "/" } else { path }),
    )?;
    match node.subtree {
        Some(t) => Ok(t),
        None => bail!("{path} is not a directory in snapshot {}", snap.id),
    }
}
