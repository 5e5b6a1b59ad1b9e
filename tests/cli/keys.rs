//! `cairn key`: several passwords, removal that never locks the owner out, and `passwd`.

use std::fs;

use serde_json::Value;

use crate::support::{one_error_line, text, Env};

fn keys(env: &Env, password: &str) -> Vec<Value> {
    let out = env
        .cairn()
        .env("CAIRN_PASSWORD", password)
        .args(["key", "list", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn opens_with(env: &Env, password: &str) -> Option<i32> {
    env.cairn()
        .env("CAIRN_PASSWORD", password)
        .arg("snapshots")
        .output()
        .unwrap()
        .status
        .code()
}

#[test]
fn passwords_are_added_removed_and_changed_without_locking_anyone_out() {
    let env = Env::new();
    env.init();
    let first = keys(&env, crate::support::PASSWORD);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["current"], true);

    let file = env.path("pw2");
    fs::write(&file, "second password\n").unwrap();
    let _ = env.ok(&[
        "--insecure-kdf",
        "key",
        "add",
        "--new-password-file",
        &file.display().to_string(),
    ]);
    assert_eq!(opens_with(&env, "second password"), Some(0));
    let both = keys(&env, "second password");
    assert_eq!(both.len(), 2);
    let second_id = both.iter().find(|k| k["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let first_id = first[0]["id"].as_str().unwrap().to_string();

    // The key in use cannot be removed; another can.
    let out = env.run(&["key", "remove", &first_id[..8]]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(one_error_line(&out.stderr).contains("opened with"));
    let _ = env.ok(&["key", "remove", &second_id[..8]]);
    assert_eq!(opens_with(&env, "second password"), Some(12));
    assert_eq!(opens_with(&env, crate::support::PASSWORD), Some(0));

    // passwd: the new password works, the old one no longer does, still one key.
    let out = env
        .cairn()
        .env("CAIRN_NEW_PASSWORD", "third password")
        .args(["--insecure-kdf", "key", "passwd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(opens_with(&env, "third password"), Some(0));
    assert_eq!(opens_with(&env, crate::support::PASSWORD), Some(12));
    assert_eq!(keys(&env, "third password").len(), 1);

    // An empty new password is refused, and nothing changes.
    let empty = env.path("empty");
    fs::write(&empty, "\n").unwrap();
    let out = env
        .cairn()
        .env("CAIRN_PASSWORD", "third password")
        .args([
            "key",
            "add",
            "--new-password-file",
            &empty.display().to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(keys(&env, "third password").len(), 1);
}

/// `key export` writes the documented key document; `--key-file` opens the repository with it
/// and no password; a damaged document or one of another repository is refused in one line.
#[test]
fn an_exported_key_opens_the_repository_without_a_password() {
    let env = Env::new();
    env.init();
    let out = env.ok(&["key", "export"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["cairn_master_key"], 1);
    assert_eq!(doc["key"].as_str().unwrap().len(), 144);
    let file = env.path("master.key");
    fs::write(&file, &out.stdout).unwrap();
    let key_file = file.display().to_string();

    let out = env
        .cairn()
        .env_remove("CAIRN_PASSWORD")
        .args(["--key-file", &key_file, "snapshots", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A password that no key file takes does not matter next to the key file.
    let out = env
        .cairn()
        .env("CAIRN_PASSWORD", "wrong")
        .args(["--key-file", &key_file, "snapshots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let damaged = env.path("damaged.key");
    fs::write(&damaged, b"{\"cairn_master_key\": 1, \"key\": \"zz\"}").unwrap();
    let out = env.run(&["--key-file", &damaged.display().to_string(), "snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(one_error_line(&out.stderr).contains("not a key exported"));

    let other = Env::new();
    other.init();
    let out = other.run(&["--key-file", &key_file, "snapshots"]);
    assert_eq!(out.status.code(), Some(12), "{}", text(&out.stderr));

    // init says once how to keep such a copy.
    let third = Env::new();
    let out = third.ok(&["init", "--insecure-kdf"]);
    assert!(
        text(&out.stdout).contains("cairn key export"),
        "{}",
        text(&out.stdout)
    );
}
