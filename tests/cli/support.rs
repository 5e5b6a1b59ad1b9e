//! Helpers for the CLI tests: [`Env`] runs `cairn` against a repository in a temporary
//! directory with a fixed password; [`write_sample_tree`] and [`assert_same_tree`] make and
//! compare source trees; the data generator and the tmpfs come from repo-testkit.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use repo_testkit::{
    assert_same_tree, chown_nobody, chown_tree_nobody, is_root, noise, open_to_others, Tmpfs,
    TreeCompare,
};

/// The password of test repositories.
pub const PASSWORD: &str = "correct horse battery staple";

/// A temporary directory holding a repository path, a cache and whatever a test puts there.
pub struct Env {
    dir: tempfile::TempDir,
    /// Repository location (not created until `init`).
    pub repo: PathBuf,
}

impl Env {
    /// A fresh environment; the repository does not exist yet.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        Self { dir, repo }
    }

    /// A path inside the environment's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `cairn` with the repository, password and cache set through the environment, and no
    /// terminal on stdin.
    pub fn cairn(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.env("CAIRN_REPOSITORY", &self.repo)
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .env_remove("CAIRN_CACHE_DIR")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `cairn ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cairn().args(args).output().expect("run cairn")
    }

    /// Runs `cairn ARGS` and asserts exit code 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "cairn {args:?} failed\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    /// Creates the repository (with the fast, insecure KDF).
    pub fn init(&self) {
        let _ = self.ok(&["init", "--insecure-kdf"]);
    }

    /// The snapshots as `snapshots --json` reports them.
    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["snapshots", "--json"]);
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).expect("snapshots JSON")
    }

    /// Runs `cairn ARGS`, killing it (and failing the test) if it has not finished after
    /// `limit`: for commands that would hang on a bug, such as a backup opening a fifo.
    pub fn run_within(&self, args: &[&str], limit: Duration) -> Output {
        let child = self
            .cairn()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cairn");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        let done = Arc::new(AtomicBool::new(false));
        let killed = Arc::new(AtomicBool::new(false));
        let watchdog = {
            let (done, killed) = (Arc::clone(&done), Arc::clone(&killed));
            std::thread::spawn(move || {
                let deadline = Instant::now() + limit;
                while Instant::now() < deadline {
                    if done.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                if !done.load(Ordering::SeqCst) {
                    killed.store(true, Ordering::SeqCst);
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                }
            })
        };
        let out = child.wait_with_output().expect("wait for cairn");
        done.store(true, Ordering::SeqCst);
        watchdog.join().expect("watchdog");
        assert!(
            !killed.load(Ordering::SeqCst),
            "cairn {args:?} did not finish within {limit:?}\nstderr: {}",
            text(&out.stderr)
        );
        out
    }
}

/// Parses stdout as a sequence of JSON values (JSON lines, or one indented document).
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    serde_json::Deserializer::from_slice(stdout)
        .into_iter::<Value>()
        .map(|v| v.unwrap_or_else(|e| panic!("not JSON: {e}: {:?}", text(stdout))))
        .collect()
}

/// The last JSON value on stdout, which must be a `{"message_type":"summary"}` object.
pub fn summary(out: &Output) -> Value {
    let v = json_lines(&out.stdout)
        .pop()
        .unwrap_or_else(|| panic!("no JSON output; stderr: {}", text(&out.stderr)));
    assert_eq!(v["message_type"], "summary", "{v}");
    v
}

/// Asserts that stderr is exactly one `error: ...` line and returns it.
pub fn one_error_line(stderr: &[u8]) -> String {
    let err = text(stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got {err:?}");
    assert!(lines[0].starts_with("error: "), "{err:?}");
    lines[0].to_string()
}

/// Lossy text of process output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `s` as a `&str` path argument.
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// A small tree: text, empty and multi-chunk files, nested directories, a symlink, a
/// non-UTF-8 name and a read-only file.
pub fn write_sample_tree(root: &Path) {
    fs::create_dir_all(root.join("docs/deeper")).unwrap();
    fs::write(root.join("hello.txt"), b"hello, world\n").unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("docs/big.bin"), noise(3 << 20, 7)).unwrap();
    fs::write(root.join("docs/deeper/notes.md"), b"# notes\n").unwrap();
    fs::write(
        root.join(OsStr::from_bytes(b"caf\xe9.txt")),
        b"latin-1 name",
    )
    .unwrap();
    std::os::unix::fs::symlink("hello.txt", root.join("link")).unwrap();
    let ro = root.join("docs/readonly.txt");
    fs::write(&ro, b"read only").unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o444)).unwrap();
}

/// Every entry below `dir` (directories too, symlinks not followed) as sorted relative paths.
pub fn tree_paths(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `cairn ARGS` as the unprivileged user nobody, with the environment of [`Env::cairn`]; the
/// binary is copied into the environment's directory first (see [`repo_testkit::as_nobody`]).
pub fn as_nobody(env: &Env, args: &[&str]) -> Output {
    repo_testkit::as_nobody(&env.cairn(), &env.path("cairn-as-nobody"), args)
}
