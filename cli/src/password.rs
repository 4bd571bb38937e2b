//! Where passwords come from: files, commands, the environment, a prompt —
//! never command-line arguments, never logs.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use zeroize::Zeroizing;

pub type Password = Zeroizing<Vec<u8>>;

fn first_line(bytes: &[u8]) -> Password {
    let end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
    let mut line = &bytes[..end];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    Zeroizing::new(line.to_vec())
}

/// The first line of a password file, which must be writable by its owner
/// only and belong to the user or root (`cairn_engine::read_private_file`).
pub fn from_file(path: &Path) -> Result<Password> {
    let bytes = cairn_engine::read_private_file(path, "password file")?;
    Ok(first_line(&bytes))
}

/// Most bytes read from a password command: a password is one short line.
const COMMAND_OUTPUT_MAX: usize = 64 * 1024;

/// The first line a shell command prints. The command gets no `CAIRN_*`
/// variable (it must not see the password it is asked for, nor the other
/// sources) and no standard input; its messages go to our standard error.
pub fn from_command(cmd: &str) -> Result<Password> {
    let mut child = cairn_engine::without_cairn_env(&mut Command::new("sh"))
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("running the password command")?;
    // Room for all of it up front, so no copy is left behind by a growing
    // buffer; whatever is printed beyond that is read and thrown away.
    let mut out = Zeroizing::new(Vec::with_capacity(COMMAND_OUTPUT_MAX + 1));
    let read = match child.stdout.take() {
        Some(mut pipe) => (&mut pipe)
            .take(COMMAND_OUTPUT_MAX as u64)
            .read_to_end(&mut out)
            .and_then(|_| std::io::copy(&mut pipe, &mut std::io::sink())),
        None => Ok(0),
    };
    let status = child.wait().context("waiting for the password command")?;
    read.context("reading the output of the password command")?;
    if !status.success() {
        // The command line itself may hold secrets: not printed.
        bail!("the password command failed ({status})");
    }
    Ok(first_line(&out))
}

fn prompt(label: &str) -> Result<Password> {
    if !std::io::stdin().is_terminal() {
        bail!("no password given: set CAIRN_PASSWORD_FILE, CAIRN_PASSWORD_COMMAND or CAIRN_PASSWORD (there is no terminal to ask on)");
    }
    let p = rpassword::prompt_password(label).context("reading the password")?;
    Ok(Zeroizing::new(p.into_bytes()))
}

/// The repository password, by the documented order of sources.
pub fn repository(profile_file: Option<&Path>, profile_cmd: Option<&str>) -> Result<Password> {
    if let Some(f) = std::env::var_os("CAIRN_PASSWORD_FILE") {
        return from_file(Path::new(&f));
    }
    if let Ok(c) = std::env::var("CAIRN_PASSWORD_COMMAND") {
        return from_command(&c);
    }
    if let Ok(p) = std::env::var("CAIRN_PASSWORD") {
        return Ok(Zeroizing::new(p.into_bytes()));
    }
    if let Some(f) = profile_file {
        return from_file(f);
    }
    if let Some(c) = profile_cmd {
        return from_command(c);
    }
    prompt("Repository password: ")
}

/// A new password: CAIRN_NEW_PASSWORD_FILE, or asked twice.
pub fn new_password() -> Result<Password> {
    if let Some(f) = std::env::var_os("CAIRN_NEW_PASSWORD_FILE") {
        return from_file(Path::new(&f));
    }
    let a = prompt("New password: ")?;
    let b = prompt("Repeat the new password: ")?;
    if a != b {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(a)
}

/// The password of another repository (`init --chunker-params-from`).
pub fn other_repository() -> Result<Password> {
    if let Some(f) = std::env::var_os("CAIRN_FROM_PASSWORD_FILE") {
        return from_file(Path::new(&f));
    }
    prompt("Password of the repository to copy chunker parameters from: ")
}

/// The password of a restic repository to import: `--from-password-file`,
/// `--from-password-command`, CAIRN_FROM_PASSWORD_FILE, then a prompt;
/// never the Cairn repository's own sources.
pub fn restic(flag_file: Option<&Path>, flag_cmd: Option<&str>, location: &str) -> Result<Password> {
    if let Some(f) = flag_file {
        return from_file(f);
    }
    if let Some(c) = flag_cmd {
        return from_command(c);
    }
    if let Some(f) = std::env::var_os("CAIRN_FROM_PASSWORD_FILE") {
        return from_file(Path::new(&f));
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "no password for the restic repository {location}: give --from-password-file, \
             --from-password-command or CAIRN_FROM_PASSWORD_FILE (there is no terminal to ask on)"
        );
    }
    prompt(&format!("Password of the restic repository {location}: "))
}

/// The password for a new repository: from the usual sources, or asked twice.
pub fn for_init(profile_file: Option<&Path>, profile_cmd: Option<&str>) -> Result<Password> {
    let has_source = std::env::var_os("CAIRN_PASSWORD_FILE").is_some()
        || std::env::var_os("CAIRN_PASSWORD_COMMAND").is_some()
        || std::env::var_os("CAIRN_PASSWORD").is_some()
        || profile_file.is_some()
        || profile_cmd.is_some();
    let p = if has_source {
        repository(profile_file, profile_cmd)?
    } else {
        new_password()?
    };
    if p.is_empty() {
        bail!("the password is empty; an empty password is not allowed");
    }
    Ok(p)
}

/// The password of a copy's destination: `--to-password-file`,
/// `--to-password-command`, CAIRN_TO_PASSWORD_FILE, then the destination
/// profile's own settings, then a prompt. The source's sources
/// (CAIRN_PASSWORD_*) are never used for it: the two repositories have
/// their own passwords.
pub fn destination(
    flag_file: Option<&Path>,
    flag_cmd: Option<&str>,
    profile_file: Option<&Path>,
    profile_cmd: Option<&str>,
    location: &str,
) -> Result<Password> {
    if let Some(f) = flag_file {
        return from_file(f);
    }
    if let Some(c) = flag_cmd {
        return from_command(c);
    }
    if let Some(f) = std::env::var_os("CAIRN_TO_PASSWORD_FILE") {
        return from_file(Path::new(&f));
    }
    if let Some(f) = profile_file {
        return from_file(f);
    }
    if let Some(c) = profile_cmd {
        return from_command(c);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "no password for the destination {location}: give --to-password-file, --to-password-command, \
             CAIRN_TO_PASSWORD_FILE, or password-file in its cairn.toml profile (there is no terminal to ask on)"
        );
    }
    prompt(&format!("Password of the destination {location}: "))
}
