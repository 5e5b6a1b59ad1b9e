//! Incremental backups through the CLI: the parent snapshot lets unchanged files go unread,
//! `--force` reads everything, `--parent` picks the parent, old snapshots keep old contents,
//! and `diff` names exactly what changed.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use serde_json::{json, Value};

use crate::support::{arg, assert_same_tree, json_lines, noise, summary, text, tree_paths, Env};

/// Files that stay the same in every snapshot, with their sizes.
const KEEP: [(&str, usize); 4] = [
    ("keep1.bin", 40_000),
    ("a/keep2.bin", 50_000),
    ("a/b/keep3.txt", 13),
    ("empty", 0),
];

fn backup_json(env: &Env, args: &[&str]) -> Value {
    summary(&env.ok(&[&["backup"][..], args, &["--json"]].concat()))
}

/// `diff -q` lines: the changes alone, as printed.
fn diff_lines(env: &Env, a: &str, b: &str) -> Vec<String> {
    let out = env.ok(&["diff", "-q", a, b]);
    text(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn parent_snapshot_skips_unchanged_files_and_diff_names_the_changes() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    for (i, (name, len)) in KEEP.iter().enumerate() {
        fs::write(src.join(name), noise(*len, i as u64 + 1)).unwrap();
    }
    let old_change = noise(60_000, 100);
    let deleted = noise(30_000, 101);
    fs::write(src.join("change.bin"), &old_change).unwrap();
    fs::write(src.join("delete.bin"), &deleted).unwrap();
    let keep_bytes: usize = KEEP.iter().map(|(_, len)| len).sum();
    env.init();

    let first = backup_json(&env, &[arg(&src)]);
    assert_eq!(first["files_new"], 6, "{first}");
    assert_eq!(first["files_changed"], 0, "{first}");
    assert_eq!(first["files_unmodified"], 0, "{first}");
    assert_eq!(first["parent_id"], Value::Null, "{first}");
    assert_eq!(first["bytes_read"], keep_bytes + 90_000, "{first}");
    let id1 = first["snapshot_id"].as_str().unwrap().to_string();

    // Change one file (new size, so the change shows whatever the clock granularity), add
    // one, delete one.
    let new_change = noise(75_000, 200);
    let added = noise(25_000, 300);
    fs::write(src.join("change.bin"), &new_change).unwrap();
    fs::write(src.join("a/new.bin"), &added).unwrap();
    fs::remove_file(src.join("delete.bin")).unwrap();

    // The latest snapshot of the same host and paths is the parent; only the changed and new
    // files are read.
    let second = backup_json(&env, &[arg(&src)]);
    assert_eq!(second["parent_id"], id1.as_str(), "{second}");
    assert_eq!(second["files_new"], 1, "{second}");
    assert_eq!(second["files_changed"], 1, "{second}");
    assert_eq!(second["files_unmodified"], 4, "{second}");
    assert_eq!(second["bytes_read"], 75_000 + 25_000, "{second}");
    assert_eq!(second["bytes_total"], keep_bytes + 100_000, "{second}");
    let id2 = second["snapshot_id"].as_str().unwrap().to_string();

    // diff: exactly the three changes, in path order, with their markers.
    let s = src.display();
    assert_eq!(
        diff_lines(&env, &id1, &id2),
        vec![
            format!("+ {s}/a/new.bin"),
            format!("M {s}/change.bin"),
            format!("- {s}/delete.bin"),
        ]
    );
    let out = env.ok(&["diff", &id1[..8], &id2[..8], "--json"]);
    let d = json_lines(&out.stdout).pop().unwrap();
    assert_eq!(
        (&d["added"], &d["removed"], &d["modified"], &d["metadata"]),
        (&json!(1), &json!(1), &json!(1), &json!(0)),
        "{d}"
    );
    assert_eq!(d["snapshot_a"], id1.as_str());
    assert_eq!(d["changes"].as_array().unwrap().len(), 3, "{d}");

    // The first snapshot still restores the old contents, the second the new ones.
    let old = env.path("old");
    let spec = format!("{id1}:{s}");
    let _ = env.ok(&["restore", &spec, "--target", arg(&old), "--verify"]);
    assert_eq!(
        tree_paths(&old),
        [
            "a",
            "a/b",
            "a/b/keep3.txt",
            "a/keep2.bin",
            "change.bin",
            "delete.bin",
            "empty",
            "keep1.bin"
        ]
    );
    assert!(fs::read(old.join("change.bin")).unwrap() == old_change);
    assert!(fs::read(old.join("delete.bin")).unwrap() == deleted);
    for (i, (name, len)) in KEEP.iter().enumerate() {
        assert!(fs::read(old.join(name)).unwrap() == noise(*len, i as u64 + 1));
    }
    let new = env.path("new");
    let spec = format!("{id2}:{s}");
    let _ = env.ok(&["restore", &spec, "--target", arg(&new), "--verify"]);
    assert_same_tree(&src, &new);
    assert!(fs::read(new.join("change.bin")).unwrap() == new_change);
    assert!(fs::read(new.join("a/new.bin")).unwrap() == added);

    // --force reads every file again, though the parent says nothing changed; the contents
    // are the same, so the snapshots do not differ.
    let forced = backup_json(&env, &[arg(&src), "--force"]);
    assert_eq!(forced["parent_id"], id2.as_str(), "{forced}");
    assert_eq!(forced["files_unmodified"], 0, "{forced}");
    assert_eq!(forced["files_new"], 0, "{forced}");
    assert_eq!(forced["files_changed"], 6, "{forced}");
    assert_eq!(forced["bytes_read"], keep_bytes + 100_000, "{forced}");
    // No data is stored again (the files are ~190 kB of noise); only trees, whose nodes
    // record the atimes the reading moved.
    assert!(forced["bytes_added"].as_u64().unwrap() < 10_000, "{forced}");
    let id3 = forced["snapshot_id"].as_str().unwrap().to_string();
    assert!(diff_lines(&env, &id2, &id3).is_empty());

    // --parent (here an id prefix) overrides the automatic choice (which would be the forced
    // snapshot, against which nothing changed).
    let chosen = backup_json(&env, &[arg(&src), "--parent", &id1[..10]]);
    assert_eq!(chosen["parent_id"], id1.as_str(), "{chosen}");
    assert_eq!(chosen["files_new"], 1, "{chosen}");
    assert_eq!(chosen["files_changed"], 1, "{chosen}");
    assert_eq!(chosen["files_unmodified"], 4, "{chosen}");
    assert_eq!(chosen["bytes_read"], 100_000, "{chosen}");
    let id4 = chosen["snapshot_id"].as_str().unwrap();
    let snaps = env.snapshots();
    let last = snaps.iter().find(|s| s["id"] == id4).unwrap();
    assert_eq!(last["parent"], id1.as_str(), "{last}");

    // An unknown --parent is an error, and nothing is saved.
    let out = env.run(&["backup", arg(&src), "--parent", "ffffffffff"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(env.snapshots().len(), 4, "a failed backup saves nothing");
}

#[test]
fn same_size_and_mtime_with_a_new_ctime_is_read_again() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("sneaky.bin"), noise(10_000, 1)).unwrap();
    fs::write(src.join("chmodded.txt"), b"mode changes only").unwrap();
    fs::write(src.join("still.txt"), b"untouched").unwrap();
    env.init();
    let first = backup_json(&env, &[arg(&src)]);
    let id1 = first["snapshot_id"].as_str().unwrap().to_string();

    // Same size, and the mtime put back: only the ctime tells the content changed.
    let sneaky = src.join("sneaky.bin");
    let before = fs::symlink_metadata(&sneaky).unwrap();
    fs::write(&sneaky, noise(10_000, 2)).unwrap();
    let atime = TimeSpec::new(
        std::os::unix::fs::MetadataExt::atime(&before),
        std::os::unix::fs::MetadataExt::atime_nsec(&before),
    );
    let mtime = TimeSpec::new(
        std::os::unix::fs::MetadataExt::mtime(&before),
        std::os::unix::fs::MetadataExt::mtime_nsec(&before),
    );
    utimensat(
        None,
        &sneaky,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
    // A metadata-only change.
    fs::set_permissions(src.join("chmodded.txt"), fs::Permissions::from_mode(0o600)).unwrap();

    let second = backup_json(&env, &[arg(&src)]);
    assert_eq!(second["files_changed"], 2, "{second}");
    assert_eq!(second["files_unmodified"], 1, "{second}");
    assert_eq!(second["bytes_read"], 10_000 + 17, "{second}");
    let id2 = second["snapshot_id"].as_str().unwrap().to_string();
    let s = src.display();
    assert_eq!(
        diff_lines(&env, &id1, &id2),
        vec![format!("U {s}/chmodded.txt"), format!("M {s}/sneaky.bin")]
    );

    let target = env.path("target");
    let spec = format!("latest:{s}");
    let _ = env.ok(&["restore", &spec, "--target", arg(&target), "--verify"]);
    assert_same_tree(&src, &target);
}
