//! Formatting shared by commands: JSON printing, sizes, hex, escaping for the terminal, and the
//! text and JSON views of snapshots and tree nodes.
//!
//! Ids appear in JSON as full 64-digit hex; names and paths as strings when they are UTF-8 and
//! otherwise under a `*_hex` key, so that nothing is lost.
//!
//! Text meant for people goes through [`escaped`] (or [`escape`]) whenever it holds anything
//! that the repository or the file system supplied: names, paths, link targets, host names,
//! tags, user and group names, and error messages (which quote them). Anyone who can write a
//! tree or a snapshot chooses those bytes, and printed raw they could forge lines of a listing
//! or drive the terminal. JSON output is never escaped this way: it carries the exact values.

use std::fmt;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::Result;
use repo_core::{DiffEntry, Node, NodeKind, Snapshot};
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

/// `bytes` (text or any file name) shown safely on a terminal, in the manner of GNU `ls
/// --quoting-style=escape`, but on UTF-8 text:
///
/// - a backslash is `\\`, so that every backslash in the output starts an escape;
/// - newline, carriage return and tab are `\n`, `\r`, `\t`;
/// - other C0 controls (ESC is `\x1b`) and DEL are `\xHH`;
/// - a byte that is not part of valid UTF-8 is `\xHH` (`\xff`);
/// - C1 controls (U+0080..U+009F), the bidirectional marks, embeddings, overrides and isolates
///   (U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069) and the line and paragraph
///   separators (U+2028, U+2029) are `\u{HHHH}` (`\u{202e}`): they could hide or reorder
///   what a name shows;
/// - everything else is printed as it is.
///
/// The output is valid UTF-8 without any of those characters, and the original bytes can be
/// recovered from it exactly.
pub fn escaped(bytes: &[u8]) -> Escaped<'_> {
    Escaped(bytes)
}

/// A path shown safely on a terminal (see [`escaped`]).
pub fn escaped_path(path: &Path) -> Escaped<'_> {
    Escaped(path.as_os_str().as_bytes())
}

/// `text` escaped for a terminal (see [`escaped`]), as a `String`.
pub fn escape(text: &str) -> String {
    escaped(text.as_bytes()).to_string()
}

/// Bytes that display escaped; made by [`escaped`] and [`escaped_path`].
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(&'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.width().is_some() || f.precision().is_some() {
            // `{:>8}` and the like pad the escaped text.
            let mut text = String::new();
            write_escaped(&mut text, self.0)?;
            return f.pad(&text);
        }
        write_escaped(f, self.0)
    }
}

/// Writes `bytes` escaped (see [`escaped`]) to `f`.
fn write_escaped(f: &mut impl fmt::Write, bytes: &[u8]) -> fmt::Result {
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let mut clean_from = 0;
        for (at, c) in valid.char_indices() {
            if !needs_escape(c) {
                continue;
            }
            f.write_str(&valid[clean_from..at])?;
            clean_from = at + c.len_utf8();
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_ascii() => write!(f, "\\x{:02x}", u32::from(c))?,
                c => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            }
        }
        f.write_str(&valid[clean_from..])?;
        for b in chunk.invalid() {
            write!(f, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

/// Whether [`Escaped`] must not print `c` as it is.
fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\\'
            | '\0'..='\x1f'
            | '\x7f'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
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

/// The JSON view of one `diff` change: `kind`, and `path` (or `path_hex`) exact.
pub fn diff_json(change: &DiffEntry) -> Value {
    let mut m = Map::new();
    put_bytes(&mut m, "path", &change.path_bytes);
    let _ = m.insert("kind".into(), json!(change.kind));
    Value::Object(m)
}

/// The JSON view of a snapshot (`snapshots --json`, `cat snapshot`).
pub fn snapshot_json(snap: &Snapshot) -> Value {
    let meta = &snap.meta;
    json!({
        "message_type": "snapshot",
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

/// One `ls -l` line: permissions, owner, group, size, mtime (local), path (and link target),
/// with names escaped for the terminal.
pub fn long_line(path: &Path, node: &Node) -> String {
    let user = if node.user.is_empty() {
        node.uid.to_string()
    } else {
        escape(&node.user)
    };
    let group = if node.group.is_empty() {
        node.gid.to_string()
    } else {
        escape(&node.group)
    };
    let mut line = format!(
        "{} {:>8} {:>8} {:>12} {} {}",
        mode_string(node.kind, node.mode),
        user,
        group,
        node.size,
        time::format_local(node.mtime_ns),
        escaped_path(path)
    );
    if node.kind == NodeKind::Symlink {
        use std::fmt::Write as _;
        let _ = write!(line, " -> {}", escaped(&node.symlink_target));
    }
    line
}

/// The backed-up paths of a snapshot, escaped for the terminal and joined with `, `.
pub fn snapshot_paths(snap: &Snapshot) -> String {
    snap.meta
        .paths
        .iter()
        .map(|p| escaped(p).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `n` and a noun for people: "1 file", "2 files"; `many` is the plural ("entries").
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n: u64 = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
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

    /// Inverts [`escaped`]: `\\`, `\n`, `\r`, `\t`, `\xHH` (one byte), `\u{H..}` (one char).
    fn unescape(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            rest = &rest[c.len_utf8()..];
            if c != '\\' {
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                continue;
            }
            let (kind, tail) = rest.split_at(1);
            rest = tail;
            match kind {
                "\\" => out.push(b'\\'),
                "n" => out.push(b'\n'),
                "r" => out.push(b'\r'),
                "t" => out.push(b'\t'),
                "x" => {
                    out.push(u8::from_str_radix(&rest[..2], 16).unwrap());
                    rest = &rest[2..];
                }
                "u" => {
                    let end = rest.find('}').unwrap();
                    let c = char::from_u32(u32::from_str_radix(&rest[1..end], 16).unwrap());
                    out.extend_from_slice(c.unwrap().encode_utf8(&mut [0; 4]).as_bytes());
                    rest = &rest[end + 1..];
                }
                other => panic!("unknown escape \\{other} in {s:?}"),
            }
        }
        out
    }

    #[test]
    fn escape_table() {
        let table: &[(&[u8], &str)] = &[
            (b"plain name.txt", "plain name.txt"),
            (b"", ""),
            (b"a\nb", r"a\nb"),
            (b"cr\rlf\n", r"cr\rlf\n"),
            (b"tab\there", r"tab\there"),
            (b"\x1b[31mred\x1b[0m", r"\x1b[31mred\x1b[0m"),
            (b"\x1b]0;title\x07", r"\x1b]0;title\x07"),
            (b"nul\0", r"nul\x00"),
            (b"\x01\x1f", r"\x01\x1f"),
            (b"del\x7f", r"del\x7f"),
            (b"back\\slash", r"back\\slash"),
            (b"\\x1b", r"\\x1b"),
            (b"\\\\", r"\\\\"),
            (b"bad\xff", r"bad\xff"),
            (b"\xc3", r"\xc3"),
            (b"caf\xe9.txt", r"caf\xe9.txt"),
            (b"\xed\xa0\x80", r"\xed\xa0\x80"),
            ("caf\u{e9}".as_bytes(), "caf\u{e9}"),
            ("\u{80}".as_bytes(), r"\u{80}"),
            ("c1\u{9b}2J".as_bytes(), r"c1\u{9b}2J"),
            ("\u{85}".as_bytes(), r"\u{85}"),
            ("\u{9f}\u{a0}".as_bytes(), "\\u{9f}\u{a0}"),
            ("\u{202e}gpj.exe".as_bytes(), r"\u{202e}gpj.exe"),
            (
                "\u{202a}\u{202b}\u{202c}\u{202d}".as_bytes(),
                r"\u{202a}\u{202b}\u{202c}\u{202d}",
            ),
            (
                "\u{2066}\u{2067}\u{2068}\u{2069}".as_bytes(),
                r"\u{2066}\u{2067}\u{2068}\u{2069}",
            ),
            (
                "\u{200e}\u{200f}\u{61c}".as_bytes(),
                r"\u{200e}\u{200f}\u{61c}",
            ),
            (
                "line\u{2028}para\u{2029}".as_bytes(),
                r"line\u{2028}para\u{2029}",
            ),
            (
                "\u{2065}\u{206a}\u{2027}".as_bytes(),
                "\u{2065}\u{206a}\u{2027}",
            ),
            ("日本語 ✓".as_bytes(), "日本語 ✓"),
        ];
        for (raw, shown) in table {
            let got = escaped(raw).to_string();
            assert_eq!(&got, shown, "escaping {raw:?}");
            assert!(
                !got.chars()
                    .any(|c| c.is_control() || needs_escape(c) && c != '\\'),
                "{got:?}"
            );
            assert_eq!(&unescape(&got), raw, "round trip of {raw:?}");
        }
        assert_eq!(escape("a\n\\"), r"a\n\\");
        assert_eq!(format!("[{:>6}]", escaped(b"\x1b")), r"[  \x1b]");
        assert_eq!(
            escaped_path(Path::new(std::ffi::OsStr::from_bytes(b"/d/\xff\n"))).to_string(),
            r"/d/\xff\n"
        );
    }

    #[test]
    fn escaping_round_trips_every_byte_pair() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let raw = [a, b'x', b, a];
                let got = escaped(&raw).to_string();
                assert!(!got.chars().any(|c| c.is_control()), "{raw:?} -> {got:?}");
                assert_eq!(unescape(&got), raw, "{got:?}");
            }
        }
    }

    #[test]
    fn long_lines_escape_owner_path_and_link_target() {
        let mut node = Node::new(b"l".to_vec(), NodeKind::Symlink);
        node.mode = 0o777;
        node.user = "ro\not".into();
        node.group = "\x1b[2J".into();
        node.symlink_target = b"\x1b]0;t\x07\n\xff".to_vec();
        let path = Path::new(std::ffi::OsStr::from_bytes(b"/a\nb/\\l"));
        let line = long_line(path, &node);
        assert!(
            line.starts_with(r"lrwxrwxrwx   ro\not  \x1b[2J "),
            "{line:?}"
        );
        assert!(
            line.ends_with(r" /a\nb/\\l -> \x1b]0;t\x07\n\xff"),
            "{line:?}"
        );
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
