//! Tidy checks on the source tree: module docs, spec coverage, the vector manifest, dependencies.
//!
//! These keep the conventions of STYLE §5 and §9 from eroding: every module says what it is, every
//! spec chapter is implemented somewhere that names it, and every vector file is accounted for
//! (spec/vectors/README.md).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Files under `dir` (recursively) whose name ends with `suffix`, as paths relative to `dir`.
fn files_under(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, suffix, out);
            } else if path.to_string_lossy().ends_with(suffix) {
                out.push(path.strip_prefix(base).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, suffix, &mut out);
    out.sort();
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn core_sources() -> Vec<(PathBuf, String)> {
    let src = repo_root().join("repo-core/src");
    files_under(&src, ".rs")
        .into_iter()
        .map(|rel| {
            let text = read(&src.join(&rel));
            (Path::new("repo-core/src").join(rel), text)
        })
        .collect()
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    let missing: Vec<String> = core_sources()
        .into_iter()
        .filter(|(_, text)| !text.starts_with("//!"))
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these files must start with a `//!` comment saying what the module is: {missing:?}"
    );
}

/// The leading `//!` block of a source file.
fn module_header(text: &str) -> String {
    text.lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!").trim())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Chapters that no one module implements: terminology, the invariants every writer keeps and
/// the threat model. Each must still be named in some module's `//!` header.
const CROSS_CUTTING: &[&str] = &[
    "00-terminology.md",
    "09-invariants.md",
    "10-threat-model.md",
];

#[test]
fn every_spec_chapter_is_named_by_the_module_that_implements_it() {
    let headers: Vec<(PathBuf, String)> = core_sources()
        .into_iter()
        .map(|(path, text)| (path, module_header(&text)))
        .collect();
    let chapters: Vec<String> = std::fs::read_dir(repo_root().join("spec"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| {
            let b = name.as_bytes();
            name.ends_with(".md")
                && b.len() > 3
                && b[..2].iter().all(u8::is_ascii_digit)
                && b[2] == b'-'
        })
        .collect();
    assert!(
        chapters.len() >= 11,
        "spec/ should hold chapters 00 to 10, found {chapters:?}"
    );
    let mut missing = Vec::new();
    for c in &chapters {
        let named = |needle: &str| headers.iter().any(|(_, h)| h.contains(needle));
        let ok = if CROSS_CUTTING.contains(&c.as_str()) {
            named(&format!("spec/{c}"))
        } else {
            named(&format!("Implements spec/{c}"))
        };
        if !ok {
            missing.push(c.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "no module under repo-core/src names these chapters in its `//!` header (start the \
         header of the module that implements one with `//! Implements spec/NN-name.md: ...`; \
         cross-cutting chapters {CROSS_CUTTING:?} need only be named): {missing:?}"
    );
    // And every "Implements spec/..." names a chapter that exists.
    for (path, h) in &headers {
        for part in h.split("Implements spec/").skip(1) {
            let name: String = part
                .chars()
                .take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '-' || *ch == '.')
                .collect();
            let name = name.trim_end_matches('.');
            assert!(
                chapters.iter().any(|c| c == name),
                "{} implements spec/{name}, which is not a chapter",
                path.display()
            );
        }
    }
}

/// Vector files under spec/vectors/, relative to it, without the README and the manifest.
fn vector_files() -> Vec<String> {
    let dir = repo_root().join("spec/vectors");
    files_under(&dir, "")
        .into_iter()
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .filter(|p| p != "README.md" && p != "MANIFEST.sha256")
        .collect()
}

#[test]
fn every_vector_file_is_in_the_manifest() {
    let manifest = read(&repo_root().join("spec/vectors/MANIFEST.sha256"));
    let listed: BTreeSet<&str> = manifest
        .lines()
        .filter_map(|line| line.split_once("  ").map(|(_, path)| path))
        .collect();
    let files = vector_files();
    assert!(!files.is_empty(), "spec/vectors/ holds no vectors");
    let unlisted: Vec<&String> = files
        .iter()
        .filter(|f| !listed.contains(f.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "not in spec/vectors/MANIFEST.sha256 (run `UPDATE_VECTORS=1 cargo test -p repo-core --test vectors`): {unlisted:?}"
    );
}

#[test]
fn every_vector_file_is_listed_by_a_spec_chapter() {
    let spec_dir = repo_root().join("spec");
    let chapters: Vec<String> = files_under(&spec_dir, ".md")
        .into_iter()
        .filter(|p| !p.starts_with("vectors"))
        .map(|p| read(&spec_dir.join(p)))
        .collect();
    let unlisted: Vec<String> = vector_files()
        .into_iter()
        .filter(|f| {
            let needle = format!("vectors/{f}");
            !chapters.iter().any(|c| c.contains(&needle))
        })
        .collect();
    assert!(
        unlisted.is_empty(),
        "each vector file is listed under `## Vectors` in the chapter it covers; missing: {unlisted:?}"
    );
}

#[test]
fn repo_core_does_not_depend_on_anyhow() {
    let manifest = read(&repo_root().join("repo-core/Cargo.toml"));
    assert!(
        !manifest.contains("anyhow"),
        "repo-core must not use anyhow: it returns repo_core::Error (STYLE §4); anyhow is for binaries"
    );
}

#[test]
fn no_placeholder_docs() {
    let placeholders: Vec<String> = core_sources()
        .into_iter()
        .filter(|(_, text)| text.contains("TODO: Document"))
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(
        placeholders.is_empty(),
        "placeholder docs in {placeholders:?}"
    );
}

/// ARCHITECTURE.md, `pack.rs`: blobs are encoded and decoded in one place each (the pack
/// writer and the pack reader), besides the format itself and the fuzz target bodies.
#[test]
fn only_the_pack_modules_encode_or_decode_blobs() {
    let allowed = |p: &Path| {
        p.starts_with("repo-core/src/format")
            || p.starts_with("repo-core/src/pack")
            || p == Path::new("repo-core/src/fuzzing.rs")
    };
    let mut offenders = Vec::new();
    for (path, text) in core_sources() {
        if allowed(&path) {
            continue;
        }
        for call in ["encode_blob(", "decode_blob(", "decode_blob_plaintext("] {
            if text.contains(call) {
                offenders.push(format!("{}: {call}", path.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "blobs are encoded only by pack/writer.rs and decoded only by pack/reader.rs: {offenders:?}"
    );
}

/// Lines of `text` outside `//` comments.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.trim_start().starts_with("//"))
}

/// lib.rs, "What is public": one path per public item. The modules are private except
/// `format` (hidden from the docs) and, behind the `internals` feature, `fuzzing` and
/// `internals`; everything else is exported at the top.
#[test]
fn the_only_public_modules_are_format_and_the_feature_gated_internals() {
    let lib = read(&repo_root().join("repo-core/src/lib.rs"));
    let lines: Vec<&str> = lib.lines().collect();
    let mut public = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.trim().strip_prefix("pub mod ") else {
            continue;
        };
        let name = name.trim_end_matches(';');
        // The attributes right above the declaration.
        let attrs: Vec<&str> = lines[..i]
            .iter()
            .rev()
            .take_while(|l| l.trim_start().starts_with("#[") || l.trim_start().starts_with("///"))
            .copied()
            .collect();
        let hidden = attrs.iter().any(|a| a.contains("#[doc(hidden)]"));
        let gated = attrs
            .iter()
            .any(|a| a.contains(r#"#[cfg(feature = "internals")]"#));
        public.push((name.to_string(), hidden, gated));
    }
    assert_eq!(
        public,
        vec![
            ("format".to_string(), true, false),
            ("fuzzing".to_string(), true, true),
            ("internals".to_string(), true, true),
        ],
        "repo-core's public modules (name, doc-hidden, behind the internals feature)"
    );
    assert!(
        !lib.contains("IndexFile")
            && !lib.contains("KeyFileHeader")
            && !lib.contains("SnapshotFile"),
        "file layouts of the format (index and key files, the snapshot file) are not exported at the top"
    );
}

/// ARCHITECTURE.md, layering: objects go into and come out of envelopes in the pack writer
/// and reader (blobs) and in `repository.rs` (`seal_file`/`open_file`: index, snapshot and
/// lock files), besides the format itself and the fuzz target bodies.
#[test]
fn only_the_repository_and_pack_modules_use_the_envelope() {
    let allowed = |p: &Path| {
        p.starts_with("repo-core/src/format")
            || p.starts_with("repo-core/src/pack")
            || p == Path::new("repo-core/src/repository.rs")
            || p == Path::new("repo-core/src/fuzzing.rs")
    };
    let mut offenders = Vec::new();
    for (path, text) in core_sources() {
        if allowed(&path) {
            continue;
        }
        for line in code_lines(&text) {
            for (at, _) in line.match_indices("envelope::") {
                let rest = &line[at + "envelope::".len()..];
                // Naming the object type of a file is not using the envelope.
                if !rest.starts_with("ObjectType") {
                    offenders.push(format!("{}: {}", path.display(), line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "only pack/ and repository.rs seal or open envelopes: {offenders:?}"
    );
}

/// ARCHITECTURE.md, layering: the CLI and the FUSE crate open a backend (the CLI's `open` and
/// `init`) and otherwise go through `Repository`; neither reaches the format or the internals,
/// and neither enables the `internals` feature outside its tests.
#[test]
fn the_cli_and_fuse_use_only_the_repository_api() {
    let root = repo_root();
    let mut offenders = Vec::new();
    for krate in ["repo-cli", "repo-fuse"] {
        let src = root.join(krate).join("src");
        for rel in files_under(&src, ".rs") {
            let shown = Path::new(krate).join("src").join(&rel);
            let text = read(&src.join(&rel));
            for line in code_lines(&text) {
                for hatch in [
                    "repo_core::format",
                    "repo_core::internals",
                    "repo_core::fuzzing",
                ] {
                    if line.contains(hatch) {
                        offenders.push(format!("{}: {}", shown.display(), line.trim()));
                    }
                }
                let opens_backend =
                    rel == Path::new("commands.rs") || rel == Path::new("commands/init.rs");
                if !opens_backend && (line.contains("LocalBackend") || line.contains("dyn Backend"))
                {
                    offenders.push(format!("{}: {}", shown.display(), line.trim()));
                }
            }
        }
        let manifest = read(&root.join(krate).join("Cargo.toml"));
        let deps = manifest
            .split("[dev-dependencies]")
            .next()
            .unwrap_or_default();
        if deps.contains("internals") {
            offenders.push(format!(
                "{krate}/Cargo.toml enables internals outside dev-dependencies"
            ));
        }
    }
    assert!(
        offenders.is_empty(),
        "the CLI and FUSE crates use repo_core's public API only: {offenders:?}"
    );
}
