//! Restore options: subpaths, include and exclude filters, the overwrite policies, verification,
//! and safety against symlinks already present in the target.

#[path = "support/fixture.rs"]
mod fixture;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fixture::{ctx, write, Fixture};
use repo_core::{
    CancelToken, ErrorKind, OpCtx, Overwrite, Progress, ProgressEvent, RestoreOptions, Snapshot,
};

const FILES: [&str; 6] = [
    "a.txt",
    "b.md",
    "docs/guide.txt",
    "docs/img/logo.png",
    "docs/img/notes.txt",
    "code/main.rs",
];

/// A backed-up source tree of [`FILES`] (each file holds its own path).
fn setup() -> (tempfile::TempDir, PathBuf, Fixture, Snapshot) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for f in FILES {
        write(&src.join(f), f.as_bytes());
    }
    let mut fx = Fixture::memory();
    let (_, snapshot) = fx.backup_dir(&src);
    (tmp, src, fx, snapshot)
}

/// Relative paths of everything below `root`.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    fixture::entries(root).into_keys().collect()
}

fn set(paths: &[&str]) -> BTreeSet<PathBuf> {
    paths.iter().map(PathBuf::from).collect()
}

fn options(src: &Path) -> RestoreOptions {
    let mut opts = RestoreOptions::default();
    opts.subpath = Some(src.to_path_buf());
    opts
}

#[test]
fn subpath_selects_a_directory_or_a_file() {
    let (tmp, src, fx, snapshot) = setup();
    let target = tmp.path().join("docs");
    let _ = fx.restore_dir(&snapshot, &src.join("docs"), &target);
    assert_eq!(
        tree(&target),
        set(&["guide.txt", "img", "img/logo.png", "img/notes.txt"])
    );
    assert_eq!(
        fs::read(target.join("img/notes.txt")).unwrap(),
        b"docs/img/notes.txt"
    );

    let target = tmp.path().join("one-file");
    let _ = fx.restore_dir(&snapshot, &src.join("b.md"), &target);
    assert_eq!(tree(&target), set(&["b.md"]));

    let err = fx
        .restore(
            &snapshot,
            &options(&src.join("nope")),
            &tmp.path().join("x"),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = fx
        .restore(
            &snapshot,
            &options(&src.join("docs/../..")),
            &tmp.path().join("x"),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(
        !tmp.path().join("x").exists(),
        "a failed plan writes nothing"
    );
}

#[test]
fn includes_and_excludes_filter_entries() {
    let (tmp, src, fx, snapshot) = setup();

    let mut opts = options(&src);
    opts.includes = vec!["*.txt".into()];
    let target = tmp.path().join("txt");
    let summary = fx.restore(&snapshot, &opts, &target).unwrap();
    assert_eq!(
        tree(&target),
        set(&[
            "a.txt",
            "docs",
            "docs/guide.txt",
            "docs/img",
            "docs/img/notes.txt"
        ]),
        "matching files and the directories leading to them"
    );
    assert_eq!(summary.files_restored, 3);

    let mut opts = options(&src);
    opts.includes = vec!["docs".into()];
    let target = tmp.path().join("docs-dir");
    let _ = fx.restore(&snapshot, &opts, &target).unwrap();
    assert_eq!(
        tree(&target),
        set(&[
            "docs",
            "docs/guide.txt",
            "docs/img",
            "docs/img/logo.png",
            "docs/img/notes.txt"
        ]),
        "an included directory brings its whole subtree"
    );

    let mut opts = options(&src);
    opts.excludes = vec!["img".into(), "*.md".into()];
    let target = tmp.path().join("no-img");
    let _ = fx.restore(&snapshot, &opts, &target).unwrap();
    assert_eq!(
        tree(&target),
        set(&["a.txt", "code", "code/main.rs", "docs", "docs/guide.txt"])
    );

    let mut opts = options(&src);
    opts.includes = vec!["*.txt".into()];
    opts.excludes = vec!["docs".into()];
    let target = tmp.path().join("both");
    let _ = fx.restore(&snapshot, &opts, &target).unwrap();
    assert_eq!(tree(&target), set(&["a.txt"]), "excludes win over includes");
}

#[test]
fn overwrite_never_keeps_existing_files() {
    let (tmp, src, fx, snapshot) = setup();
    let target = tmp.path().join("target");
    write(&target.join("a.txt"), b"local edit");
    let mut opts = options(&src);
    opts.overwrite = Overwrite::Never;
    let summary = fx.restore(&snapshot, &opts, &target).unwrap();
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"local edit");
    assert_eq!(summary.files_skipped, 1);
    assert_eq!(summary.files_restored, FILES.len() as u64 - 1);
    assert_eq!(fs::read(target.join("b.md")).unwrap(), b"b.md");
}

#[test]
fn overwrite_always_replaces_existing_entries() {
    let (tmp, src, fx, snapshot) = setup();
    let target = tmp.path().join("target");
    write(
        &target.join("a.txt"),
        b"local edit that is longer than the original",
    );
    // A directory where the snapshot has a file, and a file where it has a directory.
    write(&target.join("b.md/inner"), b"x");
    write(&target.join("code"), b"not a directory");
    let mut opts = options(&src);
    opts.delete_conflicting = true;
    let summary = fx.restore(&snapshot, &opts, &target).unwrap();
    assert_eq!(summary.files_restored, FILES.len() as u64);
    assert_eq!(summary.files_skipped, 0);
    fixture::assert_same_tree(&src, &target);
}

#[test]
fn overwrite_if_changed_compares_size_and_mtime() {
    let (tmp, src, fx, snapshot) = setup();
    let target = tmp.path().join("target");
    let _ = fx.restore_dir(&snapshot, &src, &target);

    // Same length and mtime, different bytes: looks unchanged, so it is kept (that is the
    // policy's documented trade-off).
    let same = target.join("a.txt");
    let meta = fs::metadata(&same).unwrap();
    fs::write(&same, b"A.TXT").unwrap();
    fixture::set_mtime(&same, meta.mtime(), meta.mtime_nsec());
    // A different length: rewritten.
    fs::write(target.join("b.md"), b"much longer than before").unwrap();
    // A different mtime only: rewritten.
    fixture::set_mtime(&target.join("code/main.rs"), 1, 0);

    let mut opts = options(&src);
    opts.overwrite = Overwrite::IfChanged;
    let summary = fx.restore(&snapshot, &opts, &target).unwrap();
    assert_eq!(summary.files_restored, 2);
    assert_eq!(summary.files_skipped, FILES.len() as u64 - 2);
    assert_eq!(fs::read(&same).unwrap(), b"A.TXT");
    assert_eq!(fs::read(target.join("b.md")).unwrap(), b"b.md");
    assert_eq!(
        fs::read(target.join("code/main.rs")).unwrap(),
        b"code/main.rs"
    );
    let restored = fs::metadata(target.join("code/main.rs")).unwrap();
    let original = fs::metadata(src.join("code/main.rs")).unwrap();
    assert_eq!(
        (restored.mtime(), restored.mtime_nsec()),
        (original.mtime(), original.mtime_nsec())
    );
}

#[test]
fn verify_passes_on_a_clean_restore() {
    let (tmp, src, fx, snapshot) = setup();
    let mut opts = options(&src);
    opts.verify = true;
    let summary = fx
        .restore(&snapshot, &opts, &tmp.path().join("target"))
        .unwrap();
    assert_eq!(summary.files_verified, FILES.len() as u64);
    assert!(
        summary.verify_failures.is_empty(),
        "{:?}",
        summary.verify_failures
    );
}

/// Alters restored files when the verification phase starts, that is after every file was
/// written and before any is re-read.
/// Alters two files as soon as they are complete under their final names (files are verified
/// batch by batch, after every file of the batch is written).
struct TamperBeforeVerify {
    target: PathBuf,
    done: std::sync::Mutex<[bool; 2]>,
}

impl Progress for TamperBeforeVerify {
    fn event(&self, event: &ProgressEvent<'_>) {
        if let ProgressEvent::Advanced { items: 1.., .. } = event {
            let mut done = self.done.lock().unwrap();
            // Same length, other bytes; and longer than in the snapshot.
            let edits: [(&str, &[u8]); 2] = [
                ("a.txt", b"A.TXT"),
                ("docs/guide.txt", b"docs/guide.txt and more"),
            ];
            for (i, (name, bytes)) in edits.iter().enumerate() {
                let p = self.target.join(name);
                if !done[i] && p.exists() {
                    fs::write(p, bytes).unwrap();
                    done[i] = true;
                }
            }
        }
    }
}

#[test]
fn verify_reports_files_altered_after_writing() {
    let (tmp, src, fx, snapshot) = setup();
    let target = tmp.path().join("target");
    let mut opts = options(&src);
    opts.verify = true;
    let plan = fx.repo().plan_restore(&ctx(), &snapshot, &opts).unwrap();
    let sink = TamperBeforeVerify {
        target: target.clone(),
        done: std::sync::Mutex::new([false; 2]),
    };
    let cancel = CancelToken::new();
    let summary = fx
        .repo()
        .restore(&OpCtx::new(&sink, &cancel), &plan, &target)
        .unwrap();
    assert_eq!(summary.files_verified, FILES.len() as u64);
    let mut failures = summary.verify_failures.clone();
    failures.sort();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures[0].contains("a.txt"), "{failures:?}");
    assert!(failures[1].contains("guide.txt"), "{failures:?}");
}

#[test]
fn symlinks_in_the_target_are_never_followed() {
    let (tmp, src, fx, snapshot) = setup();
    let outside = tmp.path().join("outside");
    write(&outside.join("precious.txt"), b"must stay");
    let precious = outside.join("precious.txt");
    let empty_outside = tmp.path().join("outside-dir");
    fs::create_dir(&empty_outside).unwrap();

    for policy in [Overwrite::Always, Overwrite::IfChanged, Overwrite::Never] {
        let target = tmp.path().join(format!("target-{policy:?}"));
        fs::create_dir(&target).unwrap();
        // Named like a directory and like files of the snapshot, pointing outside the target.
        std::os::unix::fs::symlink(&empty_outside, target.join("docs")).unwrap();
        std::os::unix::fs::symlink(&precious, target.join("a.txt")).unwrap();
        std::os::unix::fs::symlink(&precious, target.join("b.md")).unwrap();
        let mut opts = options(&src);
        opts.overwrite = policy;
        let summary = fx.restore(&snapshot, &opts, &target).unwrap();

        assert_eq!(fs::read(&precious).unwrap(), b"must stay", "{policy:?}");
        assert_eq!(
            fs::read_dir(&empty_outside).unwrap().count(),
            0,
            "{policy:?} wrote through a symlink"
        );
        let docs = fs::symlink_metadata(target.join("docs")).unwrap();
        let a = fs::symlink_metadata(target.join("a.txt")).unwrap();
        if policy == Overwrite::Never {
            // Left alone, and nothing written below it.
            assert!(docs.file_type().is_symlink());
            assert!(a.file_type().is_symlink());
            assert!(!summary.warnings.is_empty());
        } else {
            assert!(docs.is_dir(), "{policy:?}");
            assert!(a.is_file(), "{policy:?}");
            assert_eq!(
                fs::read(target.join("docs/img/notes.txt")).unwrap(),
                b"docs/img/notes.txt"
            );
            assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"a.txt");
            fixture::assert_same_tree(&src, &target);
        }
    }
}

#[test]
fn target_that_is_a_file_is_refused() {
    let (tmp, src, fx, snapshot) = setup();
    let target = tmp.path().join("file");
    write(&target, b"x");
    let err = fx.restore(&snapshot, &options(&src), &target).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(fs::read(&target).unwrap(), b"x");
}

#[test]
fn files_hard_linked_from_outside_the_target_are_replaced_not_written_through() {
    let (tmp, src, fx, snapshot) = setup();
    let outside = tmp.path().join("victim.txt");
    write(&outside, b"outside the target, must stay");
    for policy in [Overwrite::Always, Overwrite::IfChanged] {
        let target = tmp.path().join(format!("target-{policy:?}"));
        fs::create_dir(&target).unwrap();
        fs::hard_link(&outside, target.join("a.txt")).unwrap();
        let mut opts = options(&src);
        opts.overwrite = policy;
        let _ = fx.restore(&snapshot, &opts, &target).unwrap();
        assert_eq!(
            fs::read(&outside).unwrap(),
            b"outside the target, must stay",
            "{policy:?} wrote through a hard link"
        );
        assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"a.txt");
        assert_eq!(fs::metadata(target.join("a.txt")).unwrap().nlink(), 1);
    }
}

#[test]
fn restoring_again_over_an_earlier_restore_with_other_hard_links() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("a"), b"shared by a and b");
    fs::hard_link(src.join("a"), src.join("b")).unwrap();
    let mut fx = Fixture::memory();
    let (_, linked) = fx.backup_dir(&src);
    // Break the link: b becomes its own file.
    fs::remove_file(src.join("b")).unwrap();
    write(&src.join("b"), b"b on its own now, and longer");
    let (_, separate) = fx.backup_dir(&src);

    let target = tmp.path().join("target");
    let _ = fx.restore_dir(&linked, &src, &target);
    assert_eq!(
        fs::metadata(target.join("a")).unwrap().ino(),
        fs::metadata(target.join("b")).unwrap().ino()
    );
    let mut opts = options(&src);
    opts.verify = true;
    let summary = fx.restore(&separate, &opts, &target).unwrap();
    assert!(
        summary.verify_failures.is_empty(),
        "{:?}",
        summary.verify_failures
    );
    assert_eq!(fs::read(target.join("a")).unwrap(), b"shared by a and b");
    assert_eq!(
        fs::read(target.join("b")).unwrap(),
        b"b on its own now, and longer"
    );
    fixture::assert_same_tree(&src, &target);
}

/// A trailing `/` selects directories only, in includes and in excludes.
#[test]
fn trailing_slash_includes_and_excludes_directories_only() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for f in [
        "img/logo.png",
        "docs/img",
        "docs/a.txt",
        "docs/deep/img/x.png",
    ] {
        write(&src.join(f), f.as_bytes());
    }
    let mut fx = Fixture::memory();
    let (_, snapshot) = fx.backup_dir(&src);

    let mut opts = options(&src);
    opts.includes = vec!["img/".into()];
    let target = tmp.path().join("inc");
    let summary = fx.restore(&snapshot, &opts, &target).unwrap();
    assert_eq!(
        tree(&target),
        set(&[
            "img",
            "img/logo.png",
            "docs",
            "docs/deep",
            "docs/deep/img",
            "docs/deep/img/x.png"
        ]),
        "the file docs/img is not a directory"
    );
    assert_eq!(summary.files_restored, 2);
    let plan = fx.repo().plan_restore(&ctx(), &snapshot, &opts).unwrap();
    assert_eq!(plan.files, 2, "the plan counts with the same rule");

    let mut opts = options(&src);
    opts.excludes = vec!["img/".into()];
    let target = tmp.path().join("exc");
    let _ = fx.restore(&snapshot, &opts, &target).unwrap();
    assert_eq!(
        tree(&target),
        set(&["docs", "docs/img", "docs/a.txt", "docs/deep"])
    );

    let mut opts = options(&src);
    opts.excludes = vec!["img".into()];
    let target = tmp.path().join("exc-any");
    let _ = fx.restore(&snapshot, &opts, &target).unwrap();
    assert_eq!(
        tree(&target),
        set(&["docs", "docs/a.txt", "docs/deep"]),
        "without the slash, files and directories alike"
    );
}
