//! `cairn forget`: retention policies per group, dry runs with reasons, the refusal to empty
//! a group, removal by id, and days in the chosen time zone.

use std::fs;

use serde_json::Value;

use crate::support::{arg, one_error_line, text, Env};

fn backup_at(env: &Env, src: &std::path::Path, host: &str, time: &str, tags: &str) {
    let mut args = vec!["backup", arg(src), "--host", host, "--time", time];
    if !tags.is_empty() {
        args.extend(["--tag", tags]);
    }
    let _ = env.ok(&args);
}

fn groups(env: &Env, args: &[&str]) -> Vec<Value> {
    let out = env.ok(&[&["forget", "--json"][..], args].concat());
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["short_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_policy_keeps_per_group_says_why_and_removes_the_rest() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    for day in 1..=10 {
        backup_at(
            &env,
            &src,
            "alpha",
            &format!("2026-01-{day:02}T12:00:00Z"),
            "",
        );
    }
    for day in 1..=3 {
        backup_at(
            &env,
            &src,
            "beta",
            &format!("2026-01-{day:02}T12:00:00Z"),
            "",
        );
    }
    assert_eq!(env.snapshots().len(), 13);

    // A dry run decides and removes nothing.
    let plan = groups(
        &env,
        &["--keep-daily", "3", "--keep-last", "1", "--dry-run"],
    );
    assert_eq!(plan.len(), 2, "{plan:?}");
    let alpha = plan
        .iter()
        .find(|g| g["group_key"]["hostname"] == "alpha")
        .unwrap();
    assert_eq!(alpha["keep"].as_array().unwrap().len(), 3);
    assert_eq!(alpha["remove"].as_array().unwrap().len(), 7);
    assert_eq!(
        alpha["keep"][0]["reasons"],
        serde_json::json!(["last", "daily"])
    );
    assert_eq!(alpha["keep"][1]["reasons"], serde_json::json!(["daily"]));
    assert!(alpha["keep"][0]["time"]
        .as_str()
        .unwrap()
        .starts_with("2026-01-10"));
    let beta = plan
        .iter()
        .find(|g| g["group_key"]["hostname"] == "beta")
        .unwrap();
    assert_eq!(beta["remove"].as_array().unwrap().len(), 0);
    assert_eq!(env.snapshots().len(), 13, "a dry run removes nothing");

    let text_plan = text(&env.ok(&["forget", "--keep-daily", "3", "--dry-run"]).stdout);
    assert!(
        text_plan.contains("keep 3 snapshots:") && text_plan.contains("would remove 7 snapshots:")
    );
    assert!(
        text_plan.contains("would remove 7 snapshots in all"),
        "{text_plan}"
    );

    let removed = ids(&alpha["remove"]);
    let _ = env.ok(&["forget", "--keep-daily", "3", "--keep-last", "1"]);
    let left: Vec<String> = env
        .snapshots()
        .iter()
        .map(|s| s["short_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left.len(), 6);
    assert!(removed.iter().all(|r| !left.contains(r)));
    // The kept snapshots still restore, and the repository checks clean.
    let target = env.path("target");
    let spec = format!("latest:{}", arg(&src));
    let _ = env.ok(&["restore", &spec, "--target", arg(&target)]);
    assert_eq!(fs::read(target.join("f")).unwrap(), b"data");
    let _ = env.ok(&["check"]);

    // Applied again, the policy removes nothing more.
    let again = groups(&env, &["--keep-daily", "3", "--keep-last", "1"]);
    assert!(again
        .iter()
        .all(|g| g["remove"].as_array().unwrap().is_empty()));
}

#[test]
fn emptying_a_group_needs_allow_empty_and_ids_remove_exactly_those() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    backup_at(&env, &src, "h", "2026-02-01T00:00:00Z", "daily");
    backup_at(&env, &src, "h", "2026-02-02T00:00:00Z", "daily");
    backup_at(&env, &src, "h", "2026-02-03T00:00:00Z", "keep,audit");

    let out = env.run(&["forget", "--keep-tag", "nothing-has-this"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let line = one_error_line(&out.stderr);
    assert!(
        line.contains("keeps no snapshot") && line.contains("--allow-empty"),
        "{line}"
    );
    assert_eq!(env.snapshots().len(), 3, "nothing was removed");

    // Tags: `keep,audit` needs both.
    let plan = groups(&env, &["--keep-tag", "keep,audit", "--dry-run"]);
    assert_eq!(plan[0]["keep"].as_array().unwrap().len(), 1);
    assert_eq!(
        plan[0]["keep"][0]["reasons"],
        serde_json::json!(["tag keep,audit"])
    );

    // By id: exactly those.
    let first = env.snapshots()[0]["id"].as_str().unwrap().to_string();
    let out = env.ok(&["forget", &first[..8], "--json"]);
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["message_type"], "forget_result");
    assert_eq!(env.snapshots().len(), 2);
    assert!(env.snapshots().iter().all(|s| s["id"] != first.as_str()));

    let _ = env.ok(&["forget", "--keep-tag", "nothing-has-this", "--allow-empty"]);
    assert!(env.snapshots().is_empty());

    for bad in [vec!["forget"], vec!["forget", "--keep-within", "3x"]] {
        let out = env.run(&bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
    }
}

/// Days are days of the zone `--tz` names: 20:00 UTC on the 1st and 01:00 UTC on the 2nd are
/// two days in UTC and one day (the 2nd) in Tokyo.
#[test]
fn days_are_days_of_the_time_zone() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    backup_at(&env, &src, "h", "2026-01-01T20:00:00Z", "");
    backup_at(&env, &src, "h", "2026-01-02T01:00:00Z", "");
    let removed = |zone: &str| -> usize {
        let plan = groups(&env, &["--keep-daily", "5", "--dry-run", "--tz", zone]);
        plan[0]["remove"].as_array().unwrap().len()
    };
    assert_eq!(removed("UTC"), 0);
    assert_eq!(removed("Asia/Tokyo"), 1);
    let out = env.run(&["forget", "--keep-daily", "5", "--tz", "Nowhere/Land"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(one_error_line(&out.stderr).contains("unknown time zone"));
}
