//! Names that hold newlines, terminal escape sequences, invalid UTF-8, backslashes and
//! bidirectional overrides (issue 9, item 7b): human output shows them escaped, one line per
//! entry, with no raw control byte; `--json` gives the exact bytes back.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixListener;
use std::path::Path;

use serde_json::Value;

use crate::support::{arg, json_lines, one_error_line, text, Env};

/// A name that, printed raw in `ls -l`, would forge a second line, for a file `shadow`.
const FORGED: &[u8] = b"x\n-rw-r--r--     root     root            0 2026-01-01 00:00:00 shadow";

/// Hostile names and how human output must show them.
const NAMES: &[(&[u8], &str)] = &[
    (b"a\nb", r"a\nb"),
    (b"\x1b[31mred", r"\x1b[31mred"),
    (b"bad\xffname", r"bad\xffname"),
    (b"back\\slash", r"back\\slash"),
    (b"t\tb", r"t\tb"),
    (b"cr\rx", r"cr\rx"),
    (b"del\x7f", r"del\x7f"),
    ("c1\u{9b}2J".as_bytes(), r"c1\u{9b}2J"),
    ("\u{202e}gpj.exe".as_bytes(), r"\u{202e}gpj.exe"),
    (
        FORGED,
        r"x\n-rw-r--r--     root     root            0 2026-01-01 00:00:00 shadow",
    ),
];

/// The target of the hostile symlink (an OSC title sequence and a newline) and its escaped form.
const LINK_TARGET: &[u8] = b"\x1b]0;owned\x07\nzz";
const LINK_TARGET_SHOWN: &str = r"\x1b]0;owned\x07\nzz";

/// `--host`, `--tag` and `--description` of the second snapshot.
const HOST: &str = "evil\nhost\x1b[2J\u{202e}";
const HOST_SHOWN: &str = r"evil\nhost\x1b[2J\u{202e}";
const TAG: &str = "t\x1b[31m\\";
const TAG_SHOWN: &str = r"t\x1b[31m\\";

/// Asserts that `bytes` is UTF-8 without any control character (C0 but `\n`, DEL, C1) or
/// bidirectional formatting character, so that it cannot drive or disguise a terminal.
fn assert_terminal_safe(what: &str, bytes: &[u8]) {
    let s = std::str::from_utf8(bytes)
        .unwrap_or_else(|e| panic!("{what}: output is not UTF-8 ({e}): {:?}", text(bytes)));
    for c in s.chars() {
        let bad = (c.is_control() && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        assert!(!bad, "{what}: raw {c:?} in output: {s:?}");
    }
}

/// The exact bytes of a JSON `KEY` / `KEY_hex` pair.
fn json_bytes(v: &Value, key: &str) -> Vec<u8> {
    if let Some(s) = v[key].as_str() {
        return s.as_bytes().to_vec();
    }
    let hex = v[format!("{key}_hex")]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} or {key}_hex in {v}"));
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// `dir` joined with the raw `name`, as bytes.
fn join(dir: &Path, name: &[u8]) -> Vec<u8> {
    dir.join(OsStr::from_bytes(name))
        .as_os_str()
        .as_bytes()
        .to_vec()
}

/// A repository with two snapshots of `src`: the first holds only `plain`, the second adds
/// every hostile name (files, a symlink, a directory with a file in it, a socket that backup
/// skips with a warning) and carries a hostile host and tag. Returns the env, `src`, and the
/// stderr of the second backup.
fn setup() -> (Env, std::path::PathBuf, Vec<u8>) {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("plain"), b"plain").unwrap();
    let _ = env.ok(&["backup", "-q", arg(&src)]);
    for (name, _) in NAMES {
        fs::write(src.join(OsStr::from_bytes(name)), b"x").unwrap();
    }
    symlink(OsStr::from_bytes(LINK_TARGET), src.join("link")).unwrap();
    let dir = src.join(OsStr::from_bytes(b"dir\n\x1b[1m"));
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("inner"), b"y").unwrap();
    let _socket = UnixListener::bind(src.join(OsStr::from_bytes(b"sock\x1b[5m"))).unwrap();
    let out = env.run(&[
        "backup",
        "--host",
        HOST,
        "--tag",
        TAG,
        "--description",
        "d\x1b[31m\n",
        arg(&src),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    (env, src, out.stderr)
}

#[test]
fn hostile_names_are_escaped_in_human_output_and_exact_in_json() {
    let (env, src, backup_stderr) = setup();
    let srcs = arg(&src);

    // The skipped socket's warning: escaped, one line.
    assert_terminal_safe("backup warnings", &backup_stderr);
    let warnings = text(&backup_stderr);
    assert_eq!(warnings.lines().count(), 1, "{warnings:?}");
    assert!(
        warnings.contains(&format!(r"{srcs}/sock\x1b[5m")),
        "{warnings:?}"
    );

    // ls: one line per entry (plus the header), each hostile path on a line of its own.
    let json = env.ok(&["ls", "--json", "latest"]);
    let nodes: Vec<Value> = json_lines(&json.stdout)
        .into_iter()
        .filter(|v| v["message_type"] == "node")
        .collect();
    let exact: BTreeSet<Vec<u8>> = nodes.iter().map(|n| json_bytes(n, "path")).collect();
    for (name, _) in NAMES {
        assert!(exact.contains(&join(&src, name)), "ls --json lost {name:?}");
    }
    assert!(exact.contains(&join(&src, b"dir\n\x1b[1m/inner")));
    let link = nodes
        .iter()
        .find(|n| n["name"] == "link")
        .expect("link in ls --json");
    assert_eq!(json_bytes(link, "symlink_target"), LINK_TARGET);

    let ls = env.ok(&["ls", "latest"]);
    assert_terminal_safe("ls", &ls.stdout);
    let ls = text(&ls.stdout);
    let lines: Vec<&str> = ls.lines().collect();
    assert_eq!(lines.len(), nodes.len() + 1, "{ls}");
    for (_, shown) in NAMES {
        let want = format!("{srcs}/{shown}");
        assert!(lines.contains(&want.as_str()), "ls lacks {want:?}:\n{ls}");
    }
    let inner = format!(r"{srcs}/dir\n\x1b[1m/inner");
    assert!(lines.contains(&inner.as_str()), "{ls}");

    // ls -l: every line but the header is an entry line starting with its type and mode.
    let long = env.ok(&["ls", "-l", "latest"]);
    assert_terminal_safe("ls -l", &long.stdout);
    let long = text(&long.stdout);
    let lines: Vec<&str> = long.lines().collect();
    assert_eq!(lines.len(), nodes.len() + 1, "{long}");
    for line in &lines[1..] {
        assert!(
            line.starts_with(['-', 'd', 'l'])
                && line.as_bytes()[1..10]
                    .iter()
                    .all(|b| b"rwxsStT-".contains(b))
                && line.as_bytes()[10] == b' ',
            "not an ls -l entry line: {line:?}"
        );
    }
    assert!(
        lines.iter().filter(|l| l.ends_with(" shadow")).count() == 1
            && lines
                .iter()
                .any(|l| l.ends_with(&format!("{srcs}/{}", NAMES[9].1))),
        "a name forged a line:\n{long}"
    );
    let link_line = format!("{srcs}/link -> {LINK_TARGET_SHOWN}");
    assert!(
        lines.iter().any(|l| l.ends_with(&link_line)),
        "ls -l lacks {link_line:?}:\n{long}"
    );

    // find: the escaped long lines, and exact names in JSON.
    let find = env.ok(&["find", "*"]);
    assert_terminal_safe("find", &find.stdout);
    let find = text(&find.stdout);
    for (_, shown) in NAMES {
        let want = format!(" {srcs}/{shown}");
        assert!(
            find.lines().any(|l| l.ends_with(&want)),
            "find lacks {want:?}:\n{find}"
        );
    }
    let find_json = env.ok(&["find", "--json", "*"]);
    let groups = json_lines(&find_json.stdout);
    let found: BTreeSet<Vec<u8>> = groups[0]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["matches"].as_array().unwrap().clone())
        .map(|m| json_bytes(&m, "path"))
        .collect();
    for (name, _) in NAMES {
        assert!(
            found.contains(&join(&src, name)),
            "find --json lost {name:?}"
        );
    }

    // diff: one `+ PATH` line per added entry, escaped; exact paths in JSON.
    let snaps = env.snapshots();
    let (first, second) = (
        snaps[0]["id"].as_str().unwrap(),
        snaps[1]["id"].as_str().unwrap(),
    );
    let diff_json = env.ok(&["diff", "--json", first, second]);
    let diff_json = &json_lines(&diff_json.stdout)[0];
    let changes = diff_json["changes"].as_array().unwrap();
    let changed: BTreeSet<Vec<u8>> = changes.iter().map(|c| json_bytes(c, "path")).collect();
    for (name, _) in NAMES {
        assert!(
            changed.contains(&join(&src, name)),
            "diff --json lost {name:?}"
        );
    }
    let diff = env.ok(&["diff", "-q", first, second]);
    assert_terminal_safe("diff", &diff.stdout);
    let diff = text(&diff.stdout);
    assert_eq!(diff.lines().count(), changes.len(), "{diff}");
    for (_, shown) in NAMES {
        let want = format!("+ {srcs}/{shown}");
        assert!(
            diff.lines().any(|l| l == want),
            "diff lacks {want:?}:\n{diff}"
        );
    }

    // snapshots: the hostile host and tag escaped inside the one row of their snapshot.
    let table = env.ok(&["snapshots"]);
    assert_terminal_safe("snapshots", &table.stdout);
    let table = text(&table.stdout);
    assert_eq!(table.lines().count(), 2 + 4, "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with(&second[..8]))
        .unwrap_or_else(|| panic!("no row for {second}:\n{table}"));
    assert!(row.contains(HOST_SHOWN), "{row:?}");
    assert!(row.contains(TAG_SHOWN), "{row:?}");
    assert_eq!(snaps[1]["hostname"], HOST);
    assert_eq!(snaps[1]["tags"][0], TAG);
    assert_eq!(snaps[1]["description"], "d\x1b[31m\n");

    // A filter naming the hostile host still finds the snapshot.
    let by_host = env.ok(&["snapshots", "--host", HOST]);
    assert_terminal_safe("snapshots --host", &by_host.stdout);
    assert!(text(&by_host.stdout).contains(HOST_SHOWN));
}

#[test]
fn error_lines_escape_hostile_names() {
    let (env, src, _) = setup();
    // A path that is not in the snapshot is named in the error: escaped, on one line.
    let missing = format!("{}/\x1b[31mred\n/nothing", arg(&src));
    let out = env.run(&["ls", "latest", &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert_terminal_safe("ls error", &out.stderr);
    let line = one_error_line(&out.stderr);
    assert!(line.contains(r"/\x1b[31mred\n/nothing"), "{line:?}");

    // A backup path that does not exist, with a backslash and a bidi override in its name.
    let gone = format!("{}/no\\such\u{202e}\r", arg(&src));
    let out = env.run(&["backup", &gone]);
    assert_ne!(out.status.code(), Some(0));
    assert_terminal_safe("backup error", &out.stderr);
    let line = one_error_line(&out.stderr);
    assert!(line.contains(r"/no\\such\u{202e}\r"), "{line:?}");
}
