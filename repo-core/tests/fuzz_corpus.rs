//! Replays every committed fuzz input (`fuzz/corpus/<target>/` seeds and
//! `fuzz/regressions/<target>/` past crashes) through the fuzz target bodies, so a decoder
//! that once panicked can never panic again unnoticed.

use std::path::Path;

#[test]
fn fuzz_corpora_replay_without_panics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for (name, target) in repo_core::fuzzing::TARGETS {
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(
                    outcome.is_ok(),
                    "fuzz target {name} panics on {}",
                    path.display()
                );
                replayed += 1;
            }
        }
    }
    assert!(
        replayed >= repo_core::fuzzing::TARGETS.len(),
        "only {replayed} inputs found under {}",
        root.display()
    );
}

#[test]
fn every_fuzz_target_is_declared_in_fuzz_cargo_toml() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/Cargo.toml"))
            .unwrap();
    for (name, _) in repo_core::fuzzing::TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml lacks target {name}"
        );
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../fuzz/fuzz_targets/{name}.rs"))
                .exists(),
            "fuzz/fuzz_targets/{name}.rs is missing"
        );
    }
}
