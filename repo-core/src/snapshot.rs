//! Snapshots as the library hands them out ([`Snapshot`]: a snapshot file with its id), and
//! choosing them: filters by host, path and tag, `latest`, id prefixes and point-in-time.

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::SnapshotFile;
use crate::id::SnapshotId;

/// A snapshot with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Id (hash of the stored snapshot file).
    pub id: SnapshotId,
    /// Its content.
    pub meta: SnapshotFile,
}

impl Snapshot {
    /// Backed-up paths, lossily as text.
    pub fn paths_lossy(&self) -> Vec<String> {
        self.meta
            .paths
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }
}

/// Which snapshots to consider. Empty lists match everything.
#[non_exhaustive]
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// Any of these hosts.
    pub hosts: Vec<String>,
    /// Snapshots whose paths include all of these.
    pub paths: Vec<Vec<u8>>,
    /// Snapshots carrying every tag of at least one of these groups: restic's meaning of
    /// `--tag a,b --tag c` (a and b, or c). No group matches everything.
    pub tags: Vec<Vec<String>>,
    /// Only snapshots at or before this time (ns since the epoch): point-in-time recovery.
    pub as_of_ns: Option<i64>,
}

impl SnapshotFilter {
    /// Whether `snap` passes the filter.
    pub fn matches(&self, snap: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&snap.meta.hostname))
            && self.paths.iter().all(|p| snap.meta.paths.contains(p))
            && (self.tags.is_empty()
                || self
                    .tags
                    .iter()
                    .any(|group| group.iter().all(|t| snap.meta.tags.contains(t))))
            && self.as_of_ns.is_none_or(|t| snap.meta.time_ns <= t)
    }
}

/// Picks one snapshot from `all` (sorted oldest first): `latest` (the newest passing the
/// filter), a full id, or a unique id prefix of at least 4 hex digits.
pub fn select<'a>(
    all: &'a [Snapshot],
    spec: &str,
    filter: &SnapshotFilter,
) -> Result<&'a Snapshot> {
    if spec == "latest" {
        return all.iter().rev().find(|s| filter.matches(s)).ok_or_else(|| {
            let message = if all.is_empty() {
                "the repository has no snapshots yet"
            } else {
                "no snapshot matches the given filters"
            };
            Error::new(ErrorKind::NotFound, message)
        });
    }
    if spec.len() < 4 || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid(format!(
            "{spec:?} is not a snapshot id, id prefix (4+ hex digits) or \"latest\""
        )));
    }
    let spec = spec.to_ascii_lowercase();
    let found: Vec<&Snapshot> = all
        .iter()
        .filter(|s| s.id.to_hex().starts_with(&spec))
        .collect();
    match found.as_slice() {
        [s] => Ok(s),
        [] => Err(Error::new(
            ErrorKind::NotFound,
            format!("no snapshot with id {spec}"),
        )),
        many => {
            // Enough digits of each to tell them apart, and at most a few of them.
            let shown: Vec<String> = many
                .iter()
                .take(5)
                .map(|s| s.id.to_hex()[..(spec.len() + 4).min(64)].to_string())
                .collect();
            let more = if many.len() > 5 {
                format!(" and {} more", many.len() - 5)
            } else {
                String::new()
            };
            Err(Error::invalid(format!(
                "snapshot id prefix {spec} is ambiguous: it matches {}{more}; give more digits",
                shown.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{BlobId, Id};

    #[test]
    fn latest_of_nothing_and_ambiguous_prefixes_say_what_is_there() {
        let err = select(&[], "latest", &SnapshotFilter::default()).unwrap_err();
        assert!(err.to_string().contains("no snapshots yet"), "{err}");
        // Two snapshots whose ids share their first 4 hex digits.
        let mut seen: std::collections::HashMap<String, Snapshot> = Default::default();
        let (a, b) = (0..100_000)
            .find_map(|i| {
                let s = snap(&[&i.to_string()]);
                let prefix = s.id.to_hex()[..4].to_string();
                seen.insert(prefix, s.clone()).map(|other| (other, s))
            })
            .unwrap();
        let prefix = a.id.to_hex()[..4].to_string();
        let all = [a.clone(), b.clone()];
        let err = select(&all, &prefix, &SnapshotFilter::default()).unwrap_err();
        let msg = err.to_string();
        for s in [&a, &b] {
            assert!(msg.contains(&s.id.to_hex()[..8]), "{msg}");
        }
        let err = select(
            &all,
            "latest",
            &SnapshotFilter {
                hosts: vec!["elsewhere".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("matches the given filters"),
            "{err}"
        );
    }

    fn snap(tags: &[&str]) -> Snapshot {
        Snapshot {
            id: SnapshotId(Id::hash(tags.join(",").as_bytes())),
            meta: SnapshotFile {
                time_ns: 0,
                hostname: "h".into(),
                username: "u".into(),
                paths: vec![b"/".to_vec()],
                tags: tags.iter().map(|t| t.to_string()).collect(),
                description: String::new(),
                parent: None,
                tree: BlobId(Id::hash(b"t")),
                program_version: "test".into(),
                summary: Default::default(),
            },
        }
    }

    #[test]
    fn tag_groups_are_any_of_all_of() {
        let f = |groups: &[&[&str]]| SnapshotFilter {
            tags: groups
                .iter()
                .map(|g| g.iter().map(|t| t.to_string()).collect())
                .collect(),
            ..SnapshotFilter::default()
        };
        let (a, b, ab) = (snap(&["a"]), snap(&["b"]), snap(&["a", "b"]));
        assert!(f(&[]).matches(&a));
        assert!(f(&[&["a"], &["b"]]).matches(&a) && f(&[&["a"], &["b"]]).matches(&b));
        assert!(!f(&[&["a", "b"]]).matches(&a) && f(&[&["a", "b"]]).matches(&ab));
        assert!(!f(&[&["c"]]).matches(&ab));
    }
}
