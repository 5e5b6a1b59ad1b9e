//! Finding the repository password.
//!
//! Sources, in order: `--password-file` / `CAIRN_PASSWORD_FILE` (first line, trailing newline
//! stripped), `--password-command` / `CAIRN_PASSWORD_COMMAND` (run with `sh -c`; first line of
//! its standard output; it must exit 0), the `CAIRN_PASSWORD` variable, and finally a prompt when
//! standard input is a terminal. Giving both a file and a command is a usage error. A new
//! repository refuses an empty password and, when prompting, asks twice.

use std::io::IsTerminal;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use repo_core::Secret;

use crate::{Failure, GlobalArgs};

/// Why the password is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Opening an existing repository.
    Open,
    /// Creating a repository: empty passwords are refused and a prompt asks twice.
    Create,
}

/// Reads the password from the first source present.
pub fn read(global: &GlobalArgs, purpose: Purpose) -> Result<Secret> {
    if let Some(file) = &global.key_file {
        if purpose == Purpose::Create {
            return Err(Failure::Usage(
                "--key-file opens an existing repository; init needs a password".into(),
            )
            .into());
        }
        return read_key_file(file);
    }
    let password = match (&global.password_file, &global.password_command) {
        (Some(_), Some(_)) => {
            return Err(Failure::Usage(
                "give either --password-file or --password-command, not both".into(),
            )
            .into())
        }
        (Some(file), None) => {
            let bytes = std::fs::read(file)
                .with_context(|| format!("cannot read password file {}", file.display()))?;
            first_line(bytes)
        }
        (None, Some(cmd)) => from_command(cmd)?,
        (None, None) => match std::env::var_os("CAIRN_PASSWORD") {
            Some(p) => std::os::unix::ffi::OsStringExt::into_vec(p),
            None => return prompt(purpose),
        },
    };
    if purpose == Purpose::Create {
        if password.is_empty() {
            bail!("an empty password is not allowed for a new repository");
        }
        check_new_password(&password)?;
    }
    Ok(Secret::password(password))
}

/// The master key exported by `cairn key export` (docs/key-export.md), for `--key-file`.
fn read_key_file(file: &std::path::Path) -> Result<Secret> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(file)
            .with_context(|| format!("cannot read key file {}", file.display()))?,
    );
    let bad = || {
        anyhow::anyhow!(
            "{} is not a key exported by `cairn key export` (a JSON object with cairn_master_key 1 and key)",
            file.display()
        )
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|_| bad())?;
    if value["cairn_master_key"] != 1 {
        return Err(bad());
    }
    let hex = value["key"].as_str().ok_or_else(bad)?;
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .filter(|_| hex.len() % 2 == 0)
        .ok_or_else(bad)?;
    Ok(Secret::MasterKey(bytes))
}

/// The new password of `key add` / `key passwd`: the first line of `file`
/// (`--new-password-file`), else `CAIRN_NEW_PASSWORD`, else a prompt that asks twice. Refused
/// when empty or when no password file could give it back.
pub fn read_new(file: Option<&std::path::Path>) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let password = match file {
        Some(file) => first_line(
            std::fs::read(file)
                .with_context(|| format!("cannot read new password file {}", file.display()))?,
        ),
        None => match std::env::var_os("CAIRN_NEW_PASSWORD") {
            Some(p) => std::os::unix::ffi::OsStringExt::into_vec(p),
            None => match &prompt(Purpose::Create)? {
                Secret::Password(p) => p.clone(),
                Secret::MasterKey(_) => bail!("a new password is needed"),
            },
        },
    };
    if password.is_empty() {
        bail!("an empty password is not allowed");
    }
    check_new_password(&password)?;
    Ok(zeroize::Zeroizing::new(password))
}

/// Refuses a new password that `--password-file` and `--password-command` could never give
/// back: they use the first line only and strip a `\r` before its end, so a password with a
/// newline, or one ending in a carriage return, would lock its owner out of every way but one.
fn check_new_password(password: &[u8]) -> Result<()> {
    if password.contains(&b'\n') {
        bail!(
            "the password contains a newline, which --password-file and --password-command cannot \
             pass on (they read one line); nothing was created: choose a password without line breaks"
        );
    }
    if password.last() == Some(&b'\r') {
        bail!(
            "the password ends with a carriage return, which --password-file and \
             --password-command strip; nothing was created: choose a password without it"
        );
    }
    Ok(())
}

fn first_line(mut bytes: Vec<u8>) -> Vec<u8> {
    if let Some(n) = bytes.iter().position(|&b| b == b'\n') {
        // Wipe what follows the first line before dropping it: it may be secret too.
        zeroize::Zeroize::zeroize(&mut bytes[n..]);
        bytes.truncate(n);
    }
    if bytes.last() == Some(&b'\r') {
        let _ = bytes.pop();
    }
    bytes
}

fn from_command(cmd: &str) -> Result<Vec<u8>> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run password command {cmd:?}"))?;
    if !out.status.success() {
        bail!("password command {cmd:?} failed ({})", out.status);
    }
    Ok(first_line(out.stdout))
}

fn prompt(purpose: Purpose) -> Result<Secret> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "no password given: set CAIRN_PASSWORD, or use --password-file or --password-command \
             (standard input is not a terminal, so cairn cannot ask)"
        );
    }
    let ask = |text: &str| rpassword::prompt_password(text).context("cannot read the password");
    match purpose {
        Purpose::Open => Ok(Secret::password(ask("enter password for repository: ")?)),
        Purpose::Create => {
            let first = ask("enter password for new repository: ")?;
            if first.is_empty() {
                bail!("an empty password is not allowed for a new repository");
            }
            check_new_password(first.as_bytes())?;
            let second = zeroize::Zeroizing::new(ask("enter password again: ")?);
            if first != *second {
                bail!("the passwords do not match; nothing was created");
            }
            Ok(Secret::password(first))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_strips_newline_and_rest() {
        assert_eq!(first_line(b"secret\nsecond\n".to_vec()), b"secret");
        assert_eq!(first_line(b"secret\r\n".to_vec()), b"secret");
        assert_eq!(first_line(b"secret".to_vec()), b"secret");
        assert_eq!(first_line(Vec::new()), b"");
    }

    #[test]
    fn new_passwords_that_no_password_file_can_carry_are_refused() {
        for bad in [&b"a\nb"[..], b"a\n", b"\n", b"a\r"] {
            assert!(check_new_password(bad).is_err(), "{bad:?}");
        }
        for good in [&b"a"[..], b"a\rb", b"correct horse"] {
            assert!(check_new_password(good).is_ok(), "{good:?}");
            assert_eq!(
                first_line(good.to_vec()),
                good,
                "round-trips through a file"
            );
        }
    }
}
