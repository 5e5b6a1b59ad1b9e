//! Backup exclusion rules: glob patterns (anchored and not, with `**`), case-insensitive
//! patterns, marker files, cache directories and file-system boundaries.

#[path = "support/fixture.rs"]
mod fixture;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fixture::{write, Fixture};
use repo_core::{BackupOptions, ErrorKind};

const CACHEDIR_TAG: &[u8] =
    b"Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag.\n";

fn set(paths: &[&str]) -> BTreeSet<PathBuf> {
    paths.iter().map(PathBuf::from).collect()
}

#[test]
fn exclude_patterns_markers_and_caches() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for p in [
        "keep.txt",
        "app.log",
        "LOUD.LOG",
        "sub/debug.log",
        "sub/keep.md",
        "node_modules/pkg/index.js",
        "web/node_modules/x.js",
        "web/app.js",
        "abs/drop-me",
        "abs/keep-me",
        "other/abs/drop-me",
        "Upper.TMP",
        "lower.tmp",
        "mixed.TmP",
        "marked/.nobackup",
        "marked/data",
        "unmarked/data",
        "cache/blob",
        "fakecache/blob",
    ] {
        write(&src.join(p), p.as_bytes());
    }
    write(&src.join("cache/CACHEDIR.TAG"), CACHEDIR_TAG);
    write(
        &src.join("fakecache/CACHEDIR.TAG"),
        b"Signature: not the right one\n",
    );

    let mut opts = BackupOptions::default();
    opts.excludes = vec![
        "*.log".into(),
        "**/node_modules".into(),
        format!("{}/abs/drop-me", src.display()),
    ];
    opts.iexcludes = vec!["*.tmp".into()];
    opts.exclude_if_present = vec![".nobackup".into()];
    opts.exclude_caches = true;
    let mut fx = Fixture::memory();
    let (summary, snapshot) = fx.backup(&[&src], &opts);
    assert!(summary.skipped.is_empty());
    assert_eq!(
        fx.paths(&snapshot, &src),
        set(&[
            "keep.txt",
            // `*.log` is case-sensitive.
            "LOUD.LOG",
            "sub",
            "sub/keep.md",
            "web",
            "web/app.js",
            "abs",
            "abs/keep-me",
            // The anchored pattern names one path only.
            "other",
            "other/abs",
            "other/abs/drop-me",
            "unmarked",
            "unmarked/data",
            // An invalid CACHEDIR.TAG does not mark a cache.
            "fakecache",
            "fakecache/blob",
            "fakecache/CACHEDIR.TAG",
        ])
    );

    // Without the rules, everything is there.
    let (_, all) = fx.backup_dir(&src);
    let everything = fx.paths(&all, &src);
    for p in [
        "app.log",
        "node_modules/pkg/index.js",
        "abs/drop-me",
        "Upper.TMP",
        "marked/data",
        "cache/blob",
    ] {
        assert!(everything.contains(Path::new(p)), "{p} missing");
    }
}

#[test]
fn invalid_pattern_is_invalid_input() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fx = Fixture::memory();
    let mut opts = BackupOptions::default();
    opts.excludes = vec!["broken[".into()];
    let err = fx
        .backup_with(&fixture::ctx(), &[tmp.path()], &opts)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("broken["), "{err}");
    assert!(fx.repo().snapshots(&fixture::ctx()).unwrap().is_empty());
}

#[test]
fn missing_source_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fx = Fixture::memory();
    let missing = tmp.path().join("no-such-dir");
    let err = fx
        .backup_with(&fixture::ctx(), &[&missing], &BackupOptions::default())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

/// `/dev` usually has other file systems mounted below it (`/dev/shm`, `/dev/pts`): with
/// `one_file_system` they are left out. Skipped where there is no such mount.
#[test]
fn one_file_system_stays_on_the_backup_path_file_system() {
    let dev = Path::new("/dev");
    let Ok(root_meta) = dev.symlink_metadata() else {
        eprintln!("skipped: no /dev");
        return;
    };
    let mounts: Vec<PathBuf> = std::fs::read_dir(dev)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.symlink_metadata()
                        .is_ok_and(|m| m.is_dir() && m.dev() != root_meta.dev())
                })
                .collect()
        })
        .unwrap_or_default();
    if mounts.is_empty() {
        eprintln!("skipped: no file system mounted below /dev");
        return;
    }
    let mut fx = Fixture::memory();
    let mut opts = BackupOptions::default();
    opts.one_file_system = true;
    let (_, snapshot) = fx.backup(&[dev], &opts);
    let listing = fx.paths(&snapshot, dev);
    assert!(!listing.is_empty(), "/dev itself was backed up");
    for m in &mounts {
        let rel = m.strip_prefix(dev).unwrap();
        assert!(
            !listing.iter().any(|p| p.starts_with(rel)),
            "{} is another file system but was backed up",
            m.display()
        );
    }
}

/// A trailing `/` excludes directories only, for plain and case-insensitive patterns, at any
/// depth and anchored, and the pre-scan's totals agree with what the backup stores.
#[test]
fn trailing_slash_excludes_directories_only() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for p in [
        "build/out.o",
        "lib/build",
        "deep/er/build/x",
        "Tmp/a",
        "tmp",
        "anchored/z",
        "sub/anchored",
    ] {
        write(&src.join(p), p.as_bytes());
    }
    let mut opts = BackupOptions::default();
    opts.excludes = vec!["build/".into(), format!("{}/anchored/", src.display())];
    opts.iexcludes = vec!["TMP/".into()];
    opts.scan = true;
    let mut fx = Fixture::memory();
    let (summary, snapshot) = fx.backup(&[&src], &opts);
    assert!(summary.skipped.is_empty());
    assert_eq!(
        fx.paths(&snapshot, &src),
        set(&[
            // A file named like the directory pattern is kept.
            "lib",
            "lib/build",
            "deep",
            "deep/er",
            "tmp",
            "sub",
            "sub/anchored",
        ])
    );
    assert_eq!(summary.stats.files_new, 3, "only the kept files are read");
    // Without the slash the same names go whatever they are.
    opts.excludes = vec!["build".into()];
    opts.iexcludes = vec!["TMP".into()];
    let (_, snapshot) = fx.backup(&[&src], &opts);
    let paths = fx.paths(&snapshot, &src);
    for gone in ["build", "lib/build", "deep/er/build", "Tmp", "tmp"] {
        assert!(!paths.contains(Path::new(gone)), "{gone} kept: {paths:?}");
    }
    assert!(paths.contains(Path::new("anchored/z")));
}

#[test]
fn empty_pattern_is_invalid_input() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fx = Fixture::memory();
    for bad in ["", "/"] {
        let mut opts = BackupOptions::default();
        opts.excludes = vec![bad.into()];
        let err = fx
            .backup_with(&fixture::ctx(), &[tmp.path()], &opts)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("empty"), "{err}");
    }
    assert!(fx.repo().snapshots(&fixture::ctx()).unwrap().is_empty());
}

/// A backup whose every path is excluded stores nothing and fails, unless `allow_empty`; the
/// root `/` counts each of its entries as a backup path. An empty directory is not nothing.
#[test]
fn a_backup_of_nothing_fails_unless_allow_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("a"), b"a");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let mut fx = Fixture::memory();
    let ctx = fixture::ctx();
    let mut opts = BackupOptions::default();
    opts.excludes = vec!["*".into()];
    for dry_run in [false, true] {
        opts.dry_run = dry_run;
        let err = fx.backup_with(&ctx, &[&src], &opts).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NothingToBackUp, "{err}");
    }
    assert!(fx.repo().snapshots(&ctx).unwrap().is_empty());

    opts.dry_run = false;
    opts.allow_empty = true;
    let summary = fx.backup_with(&ctx, &[&src], &opts).unwrap();
    let snap = fx.snapshot(&summary.snapshot.unwrap());
    assert!(fx.paths(&snap, &src).is_empty());

    let (summary, _) = fx.backup(&[&empty], &BackupOptions::default());
    assert!(summary.snapshot.is_some());
}
