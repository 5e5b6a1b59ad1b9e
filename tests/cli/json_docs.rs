//! The `--json` output of every command against its documentation, `docs/json.md`, both ways:
//! each object a command prints has a `message_type` the document lists for that command and
//! exactly the fields it lists (optional ones may be missing), every listed object is seen, and
//! every field name is explained in the glossary.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use serde_json::Value;

use crate::support::{arg, text, Env};

/// One documented object: its fields, each a set of alternatives (`path|path_hex`), and
/// whether it may be missing.
#[derive(Debug, Default)]
struct Documented {
    fields: Vec<(BTreeSet<String>, bool)>,
    stderr: bool,
}

/// `docs/json.md` read: (command, message_type) → fields; and the glossary's names.
fn documentation() -> (BTreeMap<(String, String), Documented>, BTreeSet<String>) {
    let doc = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/json.md"))
        .expect("docs/json.md");
    let ticked = |s: &str| -> Vec<String> {
        s.split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, t)| t.to_string())
            .collect()
    };
    let mut objects = BTreeMap::new();
    let mut glossary = BTreeSet::new();
    let mut command = None;
    for line in doc.lines() {
        if let Some(rest) = line.strip_prefix("### ") {
            command = ticked(rest).first().cloned();
        } else if line.starts_with("| `") {
            let line = line.replace("\\|", "\u{0}");
            let cells: Vec<&str> = line.split('|').collect();
            let (head, fields) = (cells[1], cells[2]);
            let message_type = ticked(head)[0].clone();
            let mut d = Documented {
                stderr: head.contains("(stderr)"),
                ..Documented::default()
            };
            for f in ticked(fields) {
                let optional = f.ends_with('?');
                let names = f
                    .trim_end_matches('?')
                    .split('\u{0}')
                    .map(str::to_string)
                    .collect();
                d.fields.push((names, optional));
            }
            let key = (
                command.clone().expect("a table under a ### heading"),
                message_type,
            );
            assert!(objects.insert(key.clone(), d).is_none(), "{key:?} twice");
        } else if let Some(rest) = line.strip_prefix("- `") {
            let names = rest.split(": ").next().unwrap();
            glossary.extend(ticked(&format!("`{names}")));
        }
    }
    (objects, glossary)
}

/// The top-level objects of `out` (one per line, or the elements of a line's array).
fn objects(out: &[u8]) -> Vec<Value> {
    let mut all = Vec::new();
    for line in text(out).lines().filter(|l| l.starts_with(['{', '['])) {
        match serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}")) {
            Value::Array(items) => all.extend(items),
            v => all.push(v),
        }
    }
    all
}

#[test]
fn every_json_object_is_documented_with_exactly_its_fields() {
    let (documented, glossary) = documentation();
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("a.txt"), b"alpha").unwrap();
    fs::write(src.join("d/b.txt"), b"beta").unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    // A socket is not backed up: a warning, the `error` object on stderr.
    let _socket = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    let target = env.path("target");
    let man = env.path("man");
    let new_password = env.path("new-password");
    fs::write(&new_password, "another password\n").unwrap();

    let runs: Vec<(&str, Vec<String>)> = vec![
        ("init", vec!["init".into(), "--insecure-kdf".into()]),
        (
            "backup",
            vec!["backup".into(), arg(&src).into(), "-v".into()],
        ),
        ("snapshots", vec!["snapshots".into()]),
        (
            "snapshots",
            vec!["snapshots".into(), "--group-by".into(), "host".into()],
        ),
        ("ls", vec!["ls".into(), "latest".into()]),
        ("find", vec!["find".into(), "*.txt".into()]),
        (
            "diff",
            vec!["diff".into(), "latest".into(), "latest".into()],
        ),
        ("stats", vec!["stats".into()]),
        ("check", vec!["check".into(), "--read-data".into()]),
        (
            "restore",
            vec![
                "restore".into(),
                "latest".into(),
                "--target".into(),
                arg(&target).into(),
            ],
        ),
        (
            "restore",
            vec![
                "restore".into(),
                "latest".into(),
                "--target".into(),
                arg(&env.path("t2")).into(),
                "--dry-run".into(),
            ],
        ),
        (
            "forget",
            vec![
                "forget".into(),
                "--keep-last".into(),
                "1".into(),
                "--dry-run".into(),
            ],
        ),
        (
            "forget",
            vec!["forget".into(), "latest".into(), "--dry-run".into()],
        ),
        ("unlock", vec!["unlock".into()]),
        ("key", vec!["key".into(), "list".into()]),
        (
            "key",
            vec![
                "--insecure-kdf".into(),
                "key".into(),
                "add".into(),
                "--new-password-file".into(),
                arg(&new_password).into(),
            ],
        ),
        // The key just added is not the one in use: `key remove` takes the newest one, by
        // the `latest-key` placeholder filled in below.
        (
            "key",
            vec!["key".into(), "remove".into(), "latest-key".into()],
        ),
        (
            "key",
            vec![
                "--insecure-kdf".into(),
                "key".into(),
                "passwd".into(),
                "--new-password-file".into(),
                arg(&new_password).into(),
            ],
        ),
        ("version", vec!["version".into()]),
        (
            "generate",
            vec!["generate".into(), "--man".into(), arg(&man).into()],
        ),
    ];
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    for (command, args) in &runs {
        let mut args = args.clone();
        if args.last().map(String::as_str) == Some("latest-key") {
            let out = env.ok(&["key", "list", "--json"]);
            let keys: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
            let other = keys
                .iter()
                .find(|k| k["current"] == false)
                .expect("an added key");
            *args.last_mut().unwrap() = other["id"].as_str().unwrap().to_string();
        }
        let mut full: Vec<&str> = vec!["--json"];
        full.extend(args.iter().map(String::as_str));
        let out = env.run(&full);
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "cairn {full:?}: {}",
            text(&out.stderr)
        );
        for (stderr, stream) in [(false, &out.stdout), (true, &out.stderr)] {
            for obj in objects(stream) {
                let Some(mt) = obj["message_type"].as_str() else {
                    problems.push(format!("{command}: an object without message_type: {obj}"));
                    continue;
                };
                let key = (command.to_string(), mt.to_string());
                let Some(doc) = documented.get(&key) else {
                    problems.push(format!("{command}: `{mt}` is not documented: {obj}"));
                    continue;
                };
                if doc.stderr != stderr {
                    problems.push(format!("{command}: `{mt}` on the wrong stream"));
                }
                let _ = seen.insert(key);
                let fields: BTreeSet<&str> = obj
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                for f in &fields {
                    if !doc.fields.iter().any(|(alts, _)| alts.contains(*f)) {
                        problems.push(format!("{command}: `{mt}` has undocumented `{f}`"));
                    }
                }
                for (alts, optional) in &doc.fields {
                    if !optional && !alts.iter().any(|a| fields.contains(a.as_str())) {
                        problems.push(format!("{command}: `{mt}` lacks `{alts:?}`: {obj}"));
                    }
                }
            }
        }
    }
    for key in documented.keys() {
        if !seen.contains(key) {
            problems.push(format!("documented but never printed: {key:?}"));
        }
    }
    for doc in documented.values() {
        for (alts, _) in &doc.fields {
            for name in alts {
                let base = name.strip_suffix("_hex").unwrap_or(name);
                if !glossary.contains(base) {
                    problems.push(format!("`{name}` is not in the glossary"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/json.md and the output disagree:\n{}",
        problems.join("\n")
    );
}
