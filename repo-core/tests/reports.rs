//! Read-only reports over snapshots: `diff` lists exactly what changed in path order, `find`
//! matches names and anchored paths across snapshots, and `stats` counts deduplication and
//! compression.

#[path = "support/fixture.rs"]
mod fixture;

use std::fs;
use std::path::{Path, PathBuf};

use fixture::{ctx, noise, set_mode, write, Fixture};
use repo_core::{DiffKind, NodeKind};

#[test]
fn diff_lists_added_removed_and_modified_in_path_order() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for f in [
        "same.txt",
        "changed.txt",
        "removed.txt",
        "dir/keep.txt",
        "gone-dir/x.txt",
        "meta.txt",
        "to-link",
    ] {
        write(&src.join(f), f.as_bytes());
    }
    let mut fx = Fixture::memory();
    let (_, before) = fx.backup_dir(&src);

    write(&src.join("changed.txt"), b"CHANGED.TXT");
    fs::remove_file(src.join("removed.txt")).unwrap();
    fs::remove_dir_all(src.join("gone-dir")).unwrap();
    write(&src.join("dir/new.txt"), b"new");
    write(&src.join("new-dir/y"), b"y");
    set_mode(&src.join("meta.txt"), 0o600);
    fs::remove_file(src.join("to-link")).unwrap();
    std::os::unix::fs::symlink("same.txt", src.join("to-link")).unwrap();
    let (_, after) = fx.backup_dir(&src);

    let diff = fx.repo().diff(&ctx(), &before, &after).unwrap();
    let got: Vec<(PathBuf, DiffKind)> = diff
        .iter()
        .map(|d| {
            (
                Path::new(&d.path).strip_prefix(&src).unwrap().to_path_buf(),
                d.kind,
            )
        })
        .collect();
    let expected: Vec<(PathBuf, DiffKind)> = [
        ("changed.txt", DiffKind::Modified),
        ("dir/new.txt", DiffKind::Added),
        ("gone-dir", DiffKind::Removed),
        ("gone-dir/x.txt", DiffKind::Removed),
        ("meta.txt", DiffKind::Metadata),
        ("new-dir", DiffKind::Added),
        ("new-dir/y", DiffKind::Added),
        ("removed.txt", DiffKind::Removed),
        ("to-link", DiffKind::Modified),
    ]
    .into_iter()
    .map(|(p, k)| (PathBuf::from(p), k))
    .collect();
    assert_eq!(got, expected);

    // The reverse diff swaps added and removed; a snapshot has no differences with itself.
    let reverse = fx.repo().diff(&ctx(), &after, &before).unwrap();
    assert_eq!(reverse.len(), expected.len());
    assert!(reverse
        .iter()
        .any(|d| d.path.ends_with("/removed.txt") && d.kind == DiffKind::Added));
    assert!(fx.repo().diff(&ctx(), &after, &after).unwrap().is_empty());
}

#[test]
fn find_matches_names_and_anchored_paths_across_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("notes.txt"), b"1");
    write(&src.join("docs/guide.txt"), b"2");
    write(&src.join("docs/logo.png"), b"3");
    let mut fx = Fixture::memory();
    let (_, first) = fx.backup_dir(&src);
    write(&src.join("docs/extra.txt"), b"4");
    let (_, second) = fx.backup_dir(&src);
    let both = [first.clone(), second.clone()];

    let found = |patterns: &[String]| -> Vec<(bool, PathBuf, NodeKind)> {
        let mut v: Vec<_> = fx
            .repo()
            .find(&ctx(), &both, patterns)
            .unwrap()
            .into_iter()
            .map(|(snap, e)| {
                (
                    snap.id == second.id,
                    e.path.strip_prefix(&src).unwrap().to_path_buf(),
                    e.node.kind,
                )
            })
            .collect();
        v.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        v
    };
    let txt = found(&["*.txt".into()]);
    let expect = |items: &[(bool, &str, NodeKind)]| -> Vec<(bool, PathBuf, NodeKind)> {
        items
            .iter()
            .map(|(s, p, k)| (*s, PathBuf::from(p), *k))
            .collect()
    };
    assert_eq!(
        txt,
        expect(&[
            (false, "docs/guide.txt", NodeKind::File),
            (false, "notes.txt", NodeKind::File),
            (true, "docs/extra.txt", NodeKind::File),
            (true, "docs/guide.txt", NodeKind::File),
            (true, "notes.txt", NodeKind::File),
        ])
    );
    let anchored = found(&[format!("{}/docs/*", src.display())]);
    assert_eq!(
        anchored,
        expect(&[
            (false, "docs/guide.txt", NodeKind::File),
            (false, "docs/logo.png", NodeKind::File),
            (true, "docs/extra.txt", NodeKind::File),
            (true, "docs/guide.txt", NodeKind::File),
            (true, "docs/logo.png", NodeKind::File),
        ])
    );
    assert_eq!(
        found(&["docs".into()]),
        expect(&[
            (false, "docs", NodeKind::Dir),
            (true, "docs", NodeKind::Dir)
        ])
    );
    assert!(found(&["*.pdf".into()]).is_empty());
}

/// A trailing `/` finds directories only; without it, both kinds.
#[test]
fn find_with_trailing_slash_lists_directories_only() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("a/cache"), b"a file named cache");
    write(&src.join("b/cache/x"), b"in a directory named cache");
    let mut fx = Fixture::memory();
    let (_, snap) = fx.backup_dir(&src);
    let found = |p: &str| -> Vec<(PathBuf, NodeKind)> {
        let mut v: Vec<_> = fx
            .repo()
            .find(&ctx(), std::slice::from_ref(&snap), &[p.to_string()])
            .unwrap()
            .into_iter()
            .map(|(_, e)| {
                (
                    e.path.strip_prefix(&src).unwrap().to_path_buf(),
                    e.node.kind,
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(
        found("cache/"),
        vec![(PathBuf::from("b/cache"), NodeKind::Dir)]
    );
    assert_eq!(
        found("cache"),
        vec![
            (PathBuf::from("a/cache"), NodeKind::File),
            (PathBuf::from("b/cache"), NodeKind::Dir)
        ]
    );
    assert_eq!(
        found(&format!("{}/a/cache/", src.display())),
        vec![],
        "anchored and directories only: the file does not match"
    );
}

#[test]
fn stats_count_dedup_and_compression() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let content = noise(64 * 1024, 11);
    write(&src.join("original.bin"), &content);
    write(&src.join("copy-under-another-name.bin"), &content);
    let mut fx = Fixture::memory();
    let (_, snapshot) = fx.backup_dir(&src);
    let stats = fx
        .repo()
        .stats(&ctx(), std::slice::from_ref(&snapshot))
        .unwrap();
    assert_eq!(stats.snapshots, 1);
    assert_eq!(stats.files, 2);
    assert_eq!(stats.restore_size, 2 * content.len() as u64);
    assert!(
        stats.dedup_ratio > 1.5,
        "two copies are stored once: {stats:?}"
    );
    assert!(stats.raw_size < stats.restore_size);
    assert!(stats.repository_size >= stats.stored_size);

    // Compressible content (four letters, no repeats to dedupe) compresses.
    let letters: Vec<u8> = noise(256 * 1024, 12)
        .into_iter()
        .map(|b| b'a' + b % 4)
        .collect();
    let text = tmp.path().join("text");
    write(&text.join("letters.txt"), &letters);
    let (_, text_snapshot) = fx.backup_dir(&text);
    let stats = fx
        .repo()
        .stats(&ctx(), std::slice::from_ref(&text_snapshot))
        .unwrap();
    assert!(stats.compression_ratio > 2.0, "{stats:?}");
    assert!(
        (stats.dedup_ratio - 1.0).abs() < 0.05,
        "nothing to dedupe: {stats:?}"
    );

    // Over both snapshots the counts add up.
    let all = fx.repo().stats(&ctx(), &[snapshot, text_snapshot]).unwrap();
    assert_eq!(all.snapshots, 2);
    assert_eq!(all.files, 3);
    assert_eq!(
        all.restore_size,
        2 * content.len() as u64 + letters.len() as u64
    );
}
