//! `cairn init`: create a repository in an empty or new directory.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use repo_core::{Backend, ChunkerParams, Id, InitOptions, KdfParams, LocalBackend, Repository};
use serde_json::json;

use super::App;
use crate::password::{self, Purpose};
use crate::{output, EXIT_OK};

/// Flags of `cairn init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Default compression: a zstd level -7..=22 (0 stores data uncompressed), or off,
    /// fastest (1), auto (3), better (9), max (19).
    #[arg(
        long,
        value_name = "LEVEL",
        default_value = "auto",
        allow_negative_numbers = true,
        value_parser = crate::parse_compression
    )]
    pub compression: i32,
    /// Target pack size in MiB (1..=512).
    #[arg(long, value_name = "MIB", default_value_t = 16)]
    pub pack_size: u32,
    /// Smallest chunk in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = ChunkerParams::default().min)]
    pub chunk_min: u32,
    /// Average chunk in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = ChunkerParams::default().avg)]
    pub chunk_avg: u32,
    /// Largest chunk in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = ChunkerParams::default().max)]
    pub chunk_max: u32,
}

/// Runs `cairn init`.
pub fn run(app: &App, args: &InitArgs) -> Result<u8> {
    let path = app.repo_path()?;
    let mut opts = InitOptions::default();
    opts.compression_level = args.compression;
    opts.pack_size = args
        .pack_size
        .checked_mul(1024 * 1024)
        .context("--pack-size is too large (at most 512 MiB)")?;
    opts.chunker = ChunkerParams {
        min: args.chunk_min,
        avg: args.chunk_avg,
        max: args.chunk_max,
    };
    if app.global.insecure_kdf {
        opts.kdf = KdfParams::insecure_fast();
    }
    super::refuse_non_directory(&path)?;
    let secret = password::read(&app.global, Purpose::Create)?;
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(&path));
    let repo = Repository::init(backend, &secret, &opts)?;
    let repo_id = Id(repo.config().repo_id).to_hex();
    if app.global.json {
        output::json_line(&json!({
            "message_type": "initialized",
            "id": repo_id,
            "repository": path.to_string_lossy(),
        }))?;
    } else if !app.global.quiet {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "created cairn repository {} at {}",
            repo_id.get(..10).unwrap_or(&repo_id),
            output::escaped_path(&path)
        )?;
        writeln!(
            out,
            "\nKeep the password safe: without it the data in this repository cannot be read.\nFor a copy that does not depend on the password, run `cairn key export > FILE` and store\nFILE safely: it opens the repository with `--key-file FILE`."
        )?;
    }
    Ok(EXIT_OK)
}
