//! Formatting shared by commands: JSON printing, sizes, hex, and the text and JSON views of
//! snapshots and tree nodes.
//!
//! Ids appear in JSON as full 64-digit hex; names and paths as strings when they are UTF-8 and
//! otherwise under a `*_hex` key, so that nothing is lost.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use repo_core::{Node, NodeKind, Snapshot};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::time;

/// Prints `value` as one line of JSON on stdout.
pub fn json_line<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Prints `value` as indented JSON on stdout.
pub fn json_pretty<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A byte count for people: `1.50 MiB`.
pub fn size(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}

/// A ratio for people: `2.35x`, or `-` when undefined.
pub fn ratio(r: f64) -> String {
    if r.is_finite() && r > 0.0 {
        format!("{r:.2}x")
    } else {
        "-".to_string()
    }
}

/// A duration in seconds for people: `1.23s`, `2m03s`.
pub fn seconds(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.2}s")
    } else {
        let total = s.round() as u64;
        if total < 3600 {
            format!("{}m{:02}s", total / 60, total % 60)
        } else {
            format!(
                "{}h{:02}m{:02}s",
                total / 3600,
                (total / 60) % 60,
                total % 60
            )
        }
    }
}

/// Inserts `bytes` under `key` when UTF-8, else as hex under `key_hex`.
fn put_bytes(map: &mut Map<String, Value>, key: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            let _ = map.insert(key.to_string(), Value::String(s.to_string()));
        }
        Err(_) => {
            let _ = map.insert(format!("{key}_hex"), Value::String(hex(bytes)));
        }
    }
}

/// The JSON view of a tree node; `path` (inside the snapshot) is added when given.
pub fn node_json(node: &Node, path: Option<&Path>) -> Value {
    let mut m = Map::new();
    if let Some(path) = path {
        put_bytes(
            &mut m,
            "path",
            std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()),
        );
    }
    put_bytes(&mut m, "name", &node.name);
    let mut fields = json!({
        "type": node.kind.as_str(),
        "mode": node.mode,
        "permissions": mode_string(node.kind, node.mode),
        "uid": node.uid,
        "gid": node.gid,
        "user": node.user,
        "group": node.group,
        "mtime": time::format_rfc3339(node.mtime_ns),
        "ctime": time::format_rfc3339(node.ctime_ns),
        "atime": time::format_rfc3339(node.atime_ns),
        "size": node.size,
        "device": node.device,
        "inode": node.inode,
        "links": node.links,
    });
    if let Value::Object(f) = &mut fields {
        m.append(f);
    }
    match node.kind {
        NodeKind::Symlink => put_bytes(&mut m, "symlink_target", &node.symlink_target),
        NodeKind::CharDevice | NodeKind::BlockDevice => {
            let _ = m.insert("rdev".into(), json!(node.rdev));
        }
        NodeKind::File => {
            let content: Vec<String> = node.content.iter().map(|id| id.to_hex()).collect();
            let _ = m.insert("content".into(), json!(content));
        }
        NodeKind::Dir => {
            let _ = m.insert("subtree".into(), json!(node.subtree.map(|t| t.to_hex())));
        }
        _ => {}
    }
    if !node.xattrs.is_empty() {
        let xattrs: Vec<Value> = node
            .xattrs
            .iter()
            .map(|x| {
                let mut xm = Map::new();
                put_bytes(&mut xm, "name", &x.name);
                let _ = xm.insert("value_hex".into(), Value::String(hex(&x.value)));
                Value::Object(xm)
            })
            .collect();
        let _ = m.insert("xattrs".into(), Value::Array(xattrs));
    }
    Value::Object(m)
}

/// The JSON view of a snapshot (`snapshots --json`, `cat snapshot`).
pub fn snapshot_json(snap: &Snapshot) -> Value {
    let meta = &snap.meta;
    json!({
        "id": snap.id.to_hex(),
        "short_id": snap.id.to_string(),
        "time": time::format_rfc3339(meta.time_ns),
        "time_ns": meta.time_ns,
        "hostname": meta.hostname,
        "username": meta.username,
        "paths": snap.paths_lossy(),
        "tags": meta.tags,
        "description": meta.description,
        "parent": meta.parent.map(|p| p.to_hex()),
        "tree": meta.tree.to_hex(),
        "program_version": meta.program_version,
        "summary": meta.summary,
    })
}

/// `ls -l` style permissions: `drwxr-xr-x`, `-rwsr-x--T`, `lrwxrwxrwx`.
pub fn mode_string(kind: NodeKind, mode: u32) -> String {
    let type_char = match kind {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice => 'c',
        NodeKind::BlockDevice => 'b',
        NodeKind::Socket => 's',
        _ => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(type_char);
    let special = [(0o4000, 's', 'S'), (0o2000, 's', 'S'), (0o1000, 't', 'T')];
    for (i, shift) in [6u32, 3, 0].into_iter().enumerate() {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let (flag, set_x, set_no_x) = special[i];
        let x = bits & 1 != 0;
        s.push(match (mode & flag != 0, x) {
            (true, true) => set_x,
            (true, false) => set_no_x,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// One `ls -l` line: permissions, owner, group, size, mtime (local), path (and link target).
pub fn long_line(path: &Path, node: &Node) -> String {
    let user = if node.user.is_empty() {
        node.uid.to_string()
    } else {
        node.user.clone()
    };
    let group = if node.group.is_empty() {
        node.gid.to_string()
    } else {
        node.group.clone()
    };
    let mut line = format!(
        "{} {:>8} {:>8} {:>12} {} {}",
        mode_string(node.kind, node.mode),
        user,
        group,
        node.size,
        time::format_local(node.mtime_ns),
        path.display()
    );
    if node.kind == NodeKind::Symlink {
        line.push_str(" -> ");
        line.push_str(&String::from_utf8_lossy(&node.symlink_target));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_strings_match_ls() {
        assert_eq!(mode_string(NodeKind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(NodeKind::File, 0o644), "-rw-r--r--");
        assert_eq!(mode_string(NodeKind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(NodeKind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(NodeKind::File, 0o2644), "-rw-r-Sr--");
        assert_eq!(mode_string(NodeKind::Symlink, 0o777), "lrwxrwxrwx");
    }

    #[test]
    fn non_utf8_names_go_to_hex_fields() {
        let node = Node::new(vec![0xff, b'a'], NodeKind::File);
        let v = node_json(&node, None);
        assert_eq!(v["name_hex"], "ff61");
        assert!(v.get("name").is_none());
        let node = Node::new(b"plain".to_vec(), NodeKind::Fifo);
        assert_eq!(node_json(&node, None)["name"], "plain");
    }
}
