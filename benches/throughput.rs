//! Criterion benchmarks: per-stage throughput (chunking, id hashing, compression, encryption,
//! pack assembly, index lookups) and end-to-end backup, unchanged re-backup and restore on
//! datasets generated from a fixed seed under a temporary directory.
//!
//! `cargo bench -p cairn-benches` measures; `cargo test` runs every benchmark once on small
//! inputs so the code stays working.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use repo_core::format::envelope;
use repo_core::format::index::{IndexBlob, IndexPack};
use repo_core::format::pack::{self, PackEntry};
use repo_core::internals::{Chunker, MasterKey};
use repo_core::{
    BackupOptions, BlobId, BlobType, ChunkerParams, InitOptions, KdfParams, LocalBackend,
    MasterIndex, OpCtx, PackId, ParentSelection, Repository, RestoreOptions, Secret,
    SnapshotFilter,
};

/// Full sizes under `cargo bench`; tiny ones when run as a test.
fn scale() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        1
    } else {
        64
    }
}

/// Source-like text (compresses about 3:1 with zstd -3).
fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "fn", "let", "mut", "pub", "struct", "impl", "self", "return", "match", "Some", "None",
        "Ok", "Err", "Vec", "String", "Option", "Result", "iter", "map", "collect", "unwrap",
        "clone", "path", "file", "buffer", "index", "pack", "blob", "tree", "node", "chunk",
        "hash", "(", ")", "{", "}", ";", "::", "->", "=", "&",
    ];
    let noise = repo_testkit::noise(len / 2 + 16, seed);
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0;
    while out.len() < len {
        let r = noise[i % noise.len()] as usize;
        i += 1;
        out.extend_from_slice(WORDS[r % WORDS.len()].as_bytes());
        out.push(if r.is_multiple_of(11) { b'\n' } else { b' ' });
        if r.is_multiple_of(97) {
            out.extend_from_slice(
                format!(
                    "{:08x}",
                    u32::from(noise[(i * 7) % noise.len()]).wrapping_mul(2_654_435_761)
                )
                .as_bytes(),
            );
        }
    }
    out.truncate(len);
    out
}

fn stages(c: &mut Criterion) {
    let key = MasterKey::generate().unwrap();
    let size = (64 << 20) / scale();
    let random = repo_testkit::noise(size, 1);
    let text = text_bytes(size, 2);

    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    g.bench_function("chunking", |b| {
        let mut chunker = Chunker::new(ChunkerParams::default(), key.chunker_seed());
        b.iter(|| black_box(chunker.chunk_lengths(&random)))
    });
    g.bench_function("id_hashing", |b| b.iter(|| black_box(key.blob_id(&random))));
    let blob = &text[..(1 << 20).min(text.len())];
    let id = key.blob_id(blob);
    g.throughput(Throughput::Bytes(blob.len() as u64));
    g.bench_function("compress_encrypt_text_zstd3", |b| {
        b.iter(|| black_box(envelope::encode_blob(&key, BlobType::Data, &id, blob, 3).unwrap()))
    });
    let rblob = &random[..(1 << 20).min(random.len())];
    let rid = key.blob_id(rblob);
    g.throughput(Throughput::Bytes(rblob.len() as u64));
    g.bench_function("encrypt_only", |b| {
        b.iter(|| black_box(envelope::encode_blob(&key, BlobType::Data, &rid, rblob, 0).unwrap()))
    });
    let sealed = envelope::encode_blob(&key, BlobType::Data, &id, blob, 3).unwrap();
    g.throughput(Throughput::Bytes(blob.len() as u64));
    g.bench_function("decrypt_decompress_text", |b| {
        b.iter(|| {
            black_box(
                envelope::decode_blob(&key, BlobType::Data, &id, &sealed, blob.len() as u32)
                    .unwrap(),
            )
        })
    });
    // Pack assembly: 16 blobs of 1 MiB, header, hash, verification decode.
    let blobs: Vec<Vec<u8>> = (0..16)
        .map(|i| repo_testkit::noise((1 << 20) / scale(), 100 + i))
        .collect();
    let total: usize = blobs.iter().map(Vec::len).sum();
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("pack_assembly", |b| {
        b.iter(|| {
            let mut buf = Vec::with_capacity(total + 4096);
            let mut entries = Vec::new();
            for (i, data) in blobs.iter().enumerate() {
                buf.extend_from_slice(data);
                entries.push(PackEntry {
                    blob_type: BlobType::Data,
                    id: BlobId::from([i as u8; 32]),
                    stored_len: data.len() as u32,
                    raw_len: data.len() as u32,
                });
            }
            buf.extend_from_slice(&pack::encode_header(&key, &entries).unwrap());
            let id = repo_core::Id::hash(&buf);
            black_box((id, pack::decode_pack(&key, &buf, &"bench").unwrap().len()))
        })
    });
    g.finish();

    let n_blobs = 1_000_000 / scale();
    let mut builder = MasterIndex::builder();
    let ids: Vec<BlobId> = (0..n_blobs as u64)
        .map(|i| BlobId::from(*blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect();
    for (p, chunk) in ids.chunks(16).enumerate() {
        let blobs = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| IndexBlob {
                blob_type: BlobType::Data,
                id: *id,
                offset: (i as u32) << 20,
                stored_len: 1 << 20,
                raw_len: 1 << 20,
            })
            .collect();
        let mut pid = [0u8; 32];
        pid[..8].copy_from_slice(&(p as u64).to_le_bytes());
        builder
            .add_pack(&IndexPack {
                id: PackId::from(pid),
                size: 16 << 20,
                blobs,
            })
            .unwrap();
    }
    let index = builder.build();
    let mut g = c.benchmark_group("index");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("lookups", |b| {
        let mut i = 0usize;
        b.iter(|| {
            for _ in 0..1000 {
                i = (i + 7919) % ids.len();
                black_box(index.lookup(BlobType::Data, &ids[i]));
            }
        })
    });
    g.finish();
}

/// Writes a dataset: `small` (source-like files), `large_text`, or `large_random`.
fn make_dataset(dir: &Path, kind: &str) -> u64 {
    let s = scale();
    std::fs::create_dir_all(dir).unwrap();
    let mut total = 0u64;
    match kind {
        "small" => {
            for d in 0..(40 / s.min(40)).max(1) {
                let sub = dir.join(format!("dir{d}"));
                std::fs::create_dir_all(&sub).unwrap();
                for f in 0..(500 / s.min(500)).max(2) {
                    let data = text_bytes(2000 + (f * 397) % 30_000, (d * 1000 + f) as u64);
                    total += data.len() as u64;
                    std::fs::write(sub.join(format!("f{f}.rs")), data).unwrap();
                }
            }
        }
        "large_text" => {
            for f in 0..2 {
                let data = text_bytes((128 << 20) / s, 10 + f);
                total += data.len() as u64;
                std::fs::write(dir.join(format!("big{f}.txt")), data).unwrap();
            }
        }
        _ => {
            for f in 0..2 {
                let data = repo_testkit::noise((128 << 20) / s, 20 + f);
                total += data.len() as u64;
                std::fs::write(dir.join(format!("big{f}.bin")), data).unwrap();
            }
        }
    }
    total
}

fn end_to_end(c: &mut Criterion) {
    let secret = Secret::password("bench");
    let ctx = OpCtx::default();
    for kind in ["small", "large_text", "large_random"] {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let total = make_dataset(&src, kind);
        let mut g = c.benchmark_group(format!("e2e_{kind}"));
        g.sample_size(10);
        g.throughput(Throughput::Bytes(total));
        let init = |dir: &Path| {
            let mut o = InitOptions::default();
            o.kdf = KdfParams::insecure_fast();
            let _ = std::fs::remove_dir_all(dir);
            Repository::init(Arc::new(LocalBackend::new(dir)), &secret, &o)
                .unwrap()
                .into_indexed(&ctx)
                .unwrap()
        };
        let repo_dir = tmp.path().join("repo");
        g.bench_function("first_backup", |b| {
            b.iter_batched(
                || init(&repo_dir),
                |repo| {
                    black_box(
                        repo.backup(&ctx, std::slice::from_ref(&src), &BackupOptions::default())
                            .unwrap(),
                    )
                },
                BatchSize::PerIteration,
            )
        });
        let repo = init(&repo_dir);
        let _ = repo
            .backup(&ctx, std::slice::from_ref(&src), &BackupOptions::default())
            .unwrap();
        let repo = repo.reload_index(&ctx).unwrap();
        g.bench_function("unchanged_rebackup", |b| {
            let mut o = BackupOptions::default();
            o.parent = ParentSelection::Auto;
            o.dry_run = true;
            b.iter(|| black_box(repo.backup(&ctx, std::slice::from_ref(&src), &o).unwrap()))
        });
        let snap = repo
            .find_snapshot(&ctx, "latest", &SnapshotFilter::default())
            .unwrap();
        let mut ro = RestoreOptions::default();
        ro.subpath = Some(src.clone());
        let plan = repo.plan_restore(&ctx, &snap, &ro).unwrap();
        let target = tmp.path().join("target");
        g.bench_function("restore", |b| {
            b.iter_batched(
                || {
                    let _ = std::fs::remove_dir_all(&target);
                },
                |()| black_box(repo.restore(&ctx, &plan, &target).unwrap()),
                BatchSize::PerIteration,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, stages, end_to_end);
criterion_main!(benches);
