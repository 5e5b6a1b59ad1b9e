//! Dropping privileges in tests: CI runs as root, who reads every file whatever its mode, so a
//! test about permissions runs its program (or itself) as the unprivileged user nobody (uid
//! and gid [`NOBODY`], no groups, through `setpriv`), on files given to nobody and in
//! directories opened to others.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::is_root;

/// The uid and gid of nobody.
pub const NOBODY: u32 = 65534;

/// The environment variable that marks a test process re-run by [`rerun_as_nobody`].
const AS_NOBODY_ENV: &str = "CAIRN_TEST_AS_NOBODY";

/// A command that runs `program` as nobody: `setpriv --reuid=65534 --regid=65534
/// --clear-groups -- program`. Add arguments, environment and standard streams to it.
pub fn nobody_command(program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    let _ = cmd
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
        ])
        .arg(program);
    cmd
}

/// Copies `exe` to `to` (unless it is there already), mode 0755: the build directory may be
/// out of nobody's reach (a clone in a 0700 temporary directory). Returns `to`.
pub fn copy_for_nobody(exe: &Path, to: &Path) -> PathBuf {
    if !to.exists() {
        let _ = fs::copy(exe, to)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", exe.display(), to.display()));
        fs::set_permissions(to, fs::Permissions::from_mode(0o755)).unwrap();
    }
    to.to_path_buf()
}

/// Runs `base` (its program, arguments and environment) as nobody with `args` added, the
/// program copied to `exe_copy` first ([`copy_for_nobody`]), standard input closed.
pub fn as_nobody(base: &Command, exe_copy: &Path, args: &[&str]) -> Output {
    let exe = copy_for_nobody(Path::new(base.get_program()), exe_copy);
    let mut cmd = nobody_command(&exe);
    let _ = cmd.args(base.get_args()).args(args);
    for (k, v) in base.get_envs() {
        let _ = match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.stdin(Stdio::null()).output().expect("run setpriv")
}

/// Makes `dir` reachable by other users: every ancestor (but `/`) gets search permission for
/// group and others, and `dir` itself mode 0755 (temporary directories are 0700).
pub fn open_to_others(dir: &Path) {
    let mut p = dir.join("x");
    while p.pop() && p != Path::new("/") {
        let mode = fs::metadata(&p).unwrap().permissions().mode();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode | 0o011)).unwrap();
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Gives `path` (not following a symlink) to nobody.
pub fn chown_nobody(path: &Path) {
    std::os::unix::fs::lchown(path, Some(NOBODY), Some(NOBODY))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// Gives `root` and everything below it (symlinks not followed) to nobody.
pub fn chown_tree_nobody(root: &Path) {
    chown_nobody(root);
    if fs::symlink_metadata(root).unwrap().is_dir() {
        for e in fs::read_dir(root).unwrap() {
            chown_tree_nobody(&e.unwrap().path());
        }
    }
}

/// Makes a test about permissions work as root. As root, runs the test `name` of this harness
/// again in a child process as nobody, asserts that exactly that one test ran there and
/// passed, and returns `true`: the caller then returns. In that child, or when not root,
/// returns `false`: the caller runs its body. The harness binary is copied to a directory
/// nobody can reach first.
pub fn rerun_as_nobody(name: &str) -> bool {
    if !is_root() || std::env::var_os(AS_NOBODY_ENV).is_some() {
        return false;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let exe = copy_for_nobody(
        &std::env::current_exe().unwrap(),
        &dir.path().join("harness"),
    );
    let out = nobody_command(&exe)
        .args(["--exact", name, "--test-threads=1", "--nocapture"])
        .env(AS_NOBODY_ENV, "1")
        .env("TMPDIR", "/tmp")
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} as nobody: {}\n{stdout}\n{stderr}",
        out.status
    );
    true
}
