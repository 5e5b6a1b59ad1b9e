//! Reading the source tree of a backup through directory descriptors.
//!
//! A backup must read only what is inside the directories it walks, whatever happens to the
//! tree meanwhile. Opening entries by path would follow a directory that was swapped for a
//! symlink after the walker looked at it (`src/dd` replaced by a link to `/etc`: every path
//! below it then leads elsewhere). So the walker holds each directory of its current path
//! open ([`DirStack`]) and reaches every entry by its single name relative to its parent's
//! descriptor, never following a symlink (`openat` with `O_NOFOLLOW`, `fstatat` with
//! `AT_SYMLINK_NOFOLLOW`, `readlinkat`). A directory is opened only after checking that the
//! opened one is the one its `lstat` described (same device and inode); files likewise.
//!
//! Descriptors stay bounded however deep the tree: only the root and the `window` deepest
//! levels of the current path are held open. A closed level is reopened when the walk comes
//! back to it, through `..` of the child just left, or failing that (the child was moved
//! elsewhere) by its names from the root, and in either case only when it is still the same
//! directory; otherwise it is lost and the walker reports it. Path length never matters: every
//! system call gets one name.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::format::tree::{NodeKind, Xattr};

/// Directories held open below the root: deeper ones are closed and reopened when needed.
pub(crate) const OPEN_WINDOW: usize = 64;

/// What `fstat`/`fstatat` says about an entry, with the field types of every architecture
/// widened to one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub blocks: u64,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub rdev: u64,
    /// Seconds and nanoseconds, as the file system holds them.
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub atime: (i64, i64),
}

impl Meta {
    // The stat field types differ between architectures (u32 here, u64 there).
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    fn of(st: &rustix::fs::Stat) -> Self {
        let ft = FileType::from_raw_mode(st.st_mode as rustix::fs::RawMode);
        let kind = match ft {
            FileType::RegularFile => NodeKind::File,
            FileType::Directory => NodeKind::Dir,
            FileType::Symlink => NodeKind::Symlink,
            FileType::Fifo => NodeKind::Fifo,
            FileType::CharacterDevice => NodeKind::CharDevice,
            FileType::BlockDevice => NodeKind::BlockDevice,
            _ => NodeKind::Socket,
        };
        let nsec = |n| i64::try_from(n).unwrap_or(0);
        Self {
            kind,
            mode: (st.st_mode as u32) & 0o7777,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            size: u64::try_from(st.st_size).unwrap_or(0),
            blocks: u64::try_from(st.st_blocks).unwrap_or(0),
            dev: u64::from(st.st_dev),
            ino: u64::from(st.st_ino),
            nlink: u64::from(st.st_nlink),
            rdev: u64::from(st.st_rdev),
            mtime: (i64::from(st.st_mtime), nsec(st.st_mtime_nsec)),
            ctime: (i64::from(st.st_ctime), nsec(st.st_ctime_nsec)),
            atime: (i64::from(st.st_atime), nsec(st.st_atime_nsec)),
        }
    }

    /// Whether `other` is the same file (device and inode).
    pub fn same_file(&self, other: &Meta) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// `fstat` of an open file.
pub(crate) fn fstat(file: &File) -> std::io::Result<Meta> {
    Ok(Meta::of(&rustix::fs::fstat(file)?))
}

/// `lstat` of `name` in `dir`.
pub(crate) fn lstat_at(dir: &File, name: &[u8]) -> std::io::Result<Meta> {
    Ok(Meta::of(&rustix::fs::statat(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
    )?))
}

/// Opens `name` in `dir` for reading without following a symlink and without blocking (on a
/// FIFO swapped in), or, with `directory`, only if it is a directory.
pub(crate) fn open_at(dir: &File, name: &[u8], directory: bool) -> std::io::Result<File> {
    let mut flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    if directory {
        flags |= OFlags::DIRECTORY;
    }
    Ok(File::from(rustix::fs::openat(
        dir,
        name,
        flags,
        Mode::empty(),
    )?))
}

/// The target of the symlink `name` in `dir`.
pub(crate) fn read_link_at(dir: &File, name: &[u8]) -> std::io::Result<Vec<u8>> {
    Ok(rustix::fs::readlinkat(dir, name, Vec::new())?.into_bytes())
}

/// The names in the open directory `dir`, sorted bytewise.
pub(crate) fn list(dir: &File) -> std::io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Sorted extended attributes; none when they cannot be read.
fn collect_xattrs(
    names: impl Iterator<Item = std::ffi::OsString>,
    get: impl Fn(&OsStr) -> Option<Vec<u8>>,
) -> Vec<Xattr> {
    let mut out: Vec<Xattr> = names
        .filter_map(|name| {
            let value = get(&name)?;
            Some(Xattr {
                name: name.as_bytes().to_vec(),
                value,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Extended attributes of an open file or directory.
pub(crate) fn xattrs_of(file: &File) -> Vec<Xattr> {
    use xattr::FileExt;
    let Ok(names) = file.list_xattr() else {
        return Vec::new();
    };
    collect_xattrs(names, |n| file.get_xattr(n).ok().flatten())
}

/// Extended attributes of `name` in `dir` that cannot be opened (symlinks, devices, FIFOs),
/// not following a symlink: named through the directory's descriptor (`/proc/self/fd/N/name`),
/// so a swapped parent cannot lead elsewhere. None without `/proc`.
pub(crate) fn xattrs_at(dir: &File, name: &[u8]) -> Vec<Xattr> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    let path = PathBuf::from(OsStr::from_bytes(&path));
    let Ok(names) = xattr::list(&path) else {
        return Vec::new();
    };
    collect_xattrs(names, |n| xattr::get(&path, n).ok().flatten())
}

/// Whether `dir` holds a regular file `name` starting with `head` (a `CACHEDIR.TAG`). A
/// symlink does not count: it could point anywhere.
pub(crate) fn file_starts_with(dir: &File, name: &[u8], head: &[u8]) -> bool {
    if !lstat_at(dir, name).is_ok_and(|m| m.kind == NodeKind::File) {
        return false;
    }
    let Ok(mut f) = open_at(dir, name, false) else {
        return false;
    };
    let mut buf = vec![0u8; head.len()];
    fstat(&f).is_ok_and(|m| m.kind == NodeKind::File)
        && f.read_exact(&mut buf).is_ok()
        && buf == head
}

/// Why a directory could not be entered.
#[derive(Debug)]
pub(crate) enum EnterError {
    /// Opening it failed (`ELOOP`/`ENOTDIR`: it is no longer a directory).
    Io(std::io::Error),
    /// What was opened is not the directory the walker saw.
    Changed,
}

enum Slot {
    Open(File),
    Closed,
    /// Could not be reopened as the same directory.
    Lost,
}

struct Level {
    dir: Slot,
    name: Vec<u8>,
    dev: u64,
    ino: u64,
}

/// The directories of the walker's current path, from the root down.
pub(crate) struct DirStack {
    levels: Vec<Level>,
    /// Levels `1..first_open` are closed (or lost); the root and the rest are open.
    first_open: usize,
    window: usize,
}

impl DirStack {
    /// A stack holding the root directory `/`, keeping at most `window` levels below it open.
    pub(crate) fn new(window: usize) -> std::io::Result<Self> {
        let root = File::from(rustix::fs::open(
            "/",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?);
        let meta = fstat(&root)?;
        Ok(Self {
            levels: vec![Level {
                dir: Slot::Open(root),
                name: Vec::new(),
                dev: meta.dev,
                ino: meta.ino,
            }],
            first_open: 1,
            window: window.max(1),
        })
    }

    /// The directory at the top, or None when it was lost (see [`DirStack::leave`]).
    pub(crate) fn top(&self) -> Option<&File> {
        match self.levels.last().map(|l| &l.dir) {
            Some(Slot::Open(f)) => Some(f),
            _ => None,
        }
    }

    /// Levels below the root.
    pub(crate) fn depth(&self) -> usize {
        self.levels.len() - 1
    }

    /// Enters the directory `name` of the top directory, which `seen` (its `lstat`)
    /// described. Returns the opened directory's metadata.
    pub(crate) fn enter(&mut self, name: &[u8], seen: &Meta) -> Result<Meta, EnterError> {
        let top = self
            .top()
            .ok_or_else(|| EnterError::Io(std::io::Error::other("parent directory lost")))?;
        let dir = open_at(top, name, true).map_err(EnterError::Io)?;
        let meta = fstat(&dir).map_err(EnterError::Io)?;
        if !meta.same_file(seen) || meta.kind != NodeKind::Dir {
            return Err(EnterError::Changed);
        }
        self.levels.push(Level {
            dir: Slot::Open(dir),
            name: name.to_vec(),
            dev: meta.dev,
            ino: meta.ino,
        });
        if self.levels.len() - self.first_open > self.window {
            self.levels[self.first_open].dir = Slot::Closed;
            self.first_open += 1;
        }
        Ok(meta)
    }

    /// Leaves the top directory. The one below becomes the top; when it had been closed it is
    /// reopened, and when it cannot be reopened as the same directory it is lost: [`top`]
    /// is then None until it is left in turn.
    ///
    /// [`top`]: DirStack::top
    pub(crate) fn leave(&mut self) {
        let Some(child) = self.levels.pop() else {
            return;
        };
        let t = self.levels.len() - 1;
        if t == 0 || t >= self.first_open {
            return;
        }
        // Level t was closed: `..` of the child leads to it unless the child was moved.
        let back = match &child.dir {
            Slot::Open(c) => open_at(c, b"..", true).ok(),
            _ => None,
        };
        let level = &self.levels[t];
        let same = |f: &File| fstat(f).is_ok_and(|m| m.dev == level.dev && m.ino == level.ino);
        let dir = match back {
            Some(f) if same(&f) => Some(f),
            _ => self.reopen_from_root(t),
        };
        self.levels[t].dir = dir.map_or(Slot::Lost, Slot::Open);
        self.first_open = t;
    }

    /// Opens level `t` by its names from the deepest open level above it, checking that each
    /// directory on the way is still the one the walk entered.
    fn reopen_from_root(&self, t: usize) -> Option<File> {
        // Levels 1..first_open are closed, so the root is the deepest open one above t.
        let mut cur: Option<File> = None;
        for level in &self.levels[1..=t] {
            let parent = match &cur {
                Some(f) => f,
                None => match &self.levels[0].dir {
                    Slot::Open(root) => root,
                    _ => return None,
                },
            };
            let next = open_at(parent, &level.name, true).ok()?;
            let meta = fstat(&next).ok()?;
            if meta.dev != level.dev || meta.ino != level.ino {
                return None;
            }
            cur = Some(next);
        }
        cur
    }

    /// Descriptors held open (for tests).
    #[cfg(test)]
    fn open_count(&self) -> usize {
        self.levels
            .iter()
            .filter(|l| matches!(l.dir, Slot::Open(_)))
            .count()
    }
}

/// Nanoseconds since the epoch of a time held as seconds and nanoseconds, or None when it is
/// outside what 64-bit nanoseconds hold (before 1677-09-21 or after 2262-04-11).
pub(crate) fn checked_ns(secs: i64, nsec: i64) -> Option<i64> {
    secs.checked_mul(1_000_000_000)?.checked_add(nsec)
}

/// `time` as nanoseconds, clamped to the nearest representable value when out of range.
pub(crate) fn clamped_ns(time: (i64, i64)) -> i64 {
    checked_ns(time.0, time.1).unwrap_or(if time.0 < 0 { i64::MIN } else { i64::MAX })
}

/// A UTC time as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (proleptic Gregorian calendar).
pub(crate) fn utc(secs: i64, nsec: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nsec:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    fn meta(path: &Path) -> Meta {
        let parent = File::open(path.parent().unwrap()).unwrap();
        lstat_at(&parent, path.file_name().unwrap().as_bytes()).unwrap()
    }

    /// Enters every component of `path` (absolute, without symlinks).
    fn enter_all(stack: &mut DirStack, path: &Path) {
        let mut cur = PathBuf::from("/");
        for c in path.components().skip(1) {
            cur.push(c);
            let m = meta(&cur);
            stack
                .enter(c.as_os_str().as_bytes(), &m)
                .unwrap_or_else(|e| panic!("enter {}: {e:?}", cur.display()));
        }
    }

    fn top_is(stack: &DirStack, path: &Path) -> bool {
        let want = fs::symlink_metadata(path).unwrap();
        let got = fstat(stack.top().expect("top open")).unwrap();
        use std::os::unix::fs::MetadataExt;
        got.ino == want.ino() && got.dev == want.dev()
    }

    #[test]
    fn utc_formats_dates_far_from_the_epoch() {
        assert_eq!(utc(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(utc(10_413_792_000, 5), "2300-01-01T00:00:00.000000005Z");
        assert_eq!(utc(-11_676_096_000, 0), "1600-01-01T00:00:00.000000000Z");
        assert_eq!(
            utc(i64::MAX / 1_000_000_000, 854_775_807),
            "2262-04-11T23:47:16.854775807Z"
        );
        assert_eq!(utc(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(utc(-1, 0), "1969-12-31T23:59:59.000000000Z");
    }

    #[test]
    fn extended_attributes_are_read_through_the_parent_descriptor() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("f"), b"x").unwrap();
        if xattr::set(dir.join("f"), "user.k", b"v").is_err() {
            eprintln!("skipped: no user extended attributes on this file system");
            return;
        }
        let parent = File::open(&dir).unwrap();
        let want = vec![Xattr {
            name: b"user.k".to_vec(),
            value: b"v".to_vec(),
        }];
        assert_eq!(xattrs_at(&parent, b"f"), want);
        assert_eq!(xattrs_of(&open_at(&parent, b"f", false).unwrap()), want);
        // The directory is renamed and its old name made a symlink to one without the
        // attribute: the descriptor still names the directory that was opened.
        fs::rename(&dir, tmp.path().join("moved")).unwrap();
        fs::create_dir(tmp.path().join("other")).unwrap();
        fs::write(tmp.path().join("other/f"), b"y").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("other"), &dir).unwrap();
        assert_eq!(xattrs_at(&parent, b"f"), want);
    }

    #[test]
    fn entering_a_directory_that_changed_since_its_lstat_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(tmp.path()).unwrap();
        fs::create_dir(base.join("d")).unwrap();
        fs::create_dir(base.join("other")).unwrap();
        let mut stack = DirStack::new(OPEN_WINDOW).unwrap();
        enter_all(&mut stack, &base);
        let seen = meta(&base.join("d"));
        // Replaced by another directory after the lstat.
        fs::rename(base.join("d"), base.join("moved")).unwrap();
        fs::rename(base.join("other"), base.join("d")).unwrap();
        assert!(matches!(stack.enter(b"d", &seen), Err(EnterError::Changed)));
        // Replaced by a symlink to the directory it was: not followed.
        fs::remove_dir(base.join("d")).unwrap();
        std::os::unix::fs::symlink(base.join("moved"), base.join("d")).unwrap();
        match stack.enter(b"d", &seen) {
            // O_DIRECTORY | O_NOFOLLOW on a symlink: ENOTDIR (ELOOP without O_DIRECTORY).
            Err(EnterError::Io(e)) => assert_eq!(
                e.raw_os_error(),
                Some(rustix::io::Errno::NOTDIR.raw_os_error())
            ),
            other => panic!("entered a symlink: {:?}", other.map(|_| ())),
        }
        assert!(top_is(&stack, &base));
    }

    #[test]
    fn deep_walks_keep_descriptors_bounded_and_come_back_to_the_same_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(tmp.path()).unwrap();
        let mut stack = DirStack::new(3).unwrap();
        enter_all(&mut stack, &base);
        let start = stack.depth();
        let mut p = base.clone();
        let mut chain = Vec::new();
        for i in 0..12 {
            p.push(format!("l{i}"));
            fs::create_dir(&p).unwrap();
            stack.enter(format!("l{i}").as_bytes(), &meta(&p)).unwrap();
            chain.push(p.clone());
            assert!(stack.open_count() <= 4, "{}", stack.open_count());
        }
        // While the walk is at the bottom, the bottom's parent is moved elsewhere (it is
        // still the directory the walk entered, reached through `..`), and a directory
        // higher up is moved out of its closed parent (which is then reopened by its names).
        fs::rename(&chain[10], base.join("moved-l10")).unwrap();
        fs::rename(&chain[6], base.join("moved-l6")).unwrap();
        for _ in 0..12 {
            stack.leave();
            assert!(stack.top().is_some(), "lost at depth {}", stack.depth());
        }
        assert_eq!(stack.depth(), start);
        assert!(top_is(&stack, &base));
        assert!(stack.open_count() <= 4);
    }

    #[test]
    fn a_directory_replaced_while_closed_is_lost_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(tmp.path()).unwrap();
        let mut stack = DirStack::new(2).unwrap();
        enter_all(&mut stack, &base);
        let a = base.join("a");
        let b = a.join("b");
        let c = b.join("c");
        fs::create_dir_all(&c).unwrap();
        for (name, p) in [("a", &a), ("b", &b), ("c", &c)] {
            stack.enter(name.as_bytes(), &meta(p)).unwrap();
        }
        // a is now closed. b moves out of it, and a is replaced by another directory.
        fs::rename(&b, base.join("b-out")).unwrap();
        fs::rename(&a, base.join("a-old")).unwrap();
        fs::create_dir_all(base.join("a/b")).unwrap();
        stack.leave(); // back in b (still open)
        assert!(stack.top().is_some());
        stack.leave(); // back in a: closed, `..` of b is elsewhere, a's name leads elsewhere
        assert!(
            stack.top().is_none(),
            "a replaced directory must not be entered"
        );
        stack.leave();
        assert!(top_is(&stack, &base));
    }
}
