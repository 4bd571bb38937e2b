//! What counts as a secret in what cairn records or hands on: the masking
//! rule for a backed-up command's argv (stored in snapshots, shown by
//! `snapshots` and `cat snapshot`) and the environment rule for the commands
//! cairn runs. README "Secrets" states both rules; this is their only
//! implementation.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use zeroize::Zeroizing;

/// What a masked value is replaced by.
pub const MASK: &str = "***";

/// Environment variables with this prefix never reach a child process.
pub const SECRET_ENV_PREFIX: &str = "CAIRN_";

/// An option or variable whose name contains one of these (in any letter
/// case) is taken to carry a secret. Broad on purpose: masking a harmless
/// value costs a little information, missing a secret costs the secret.
const SECRET_WORDS: [&str; 7] = ["password", "passwd", "secret", "token", "key", "credential", "auth"];

/// Largest file [`read_private_file`] reads: passwords and configuration
/// files are small, and a larger one is a mistake.
pub const PRIVATE_FILE_MAX: u64 = 1024 * 1024;

/// Errors of reading a file that decides what cairn trusts.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The file could not be opened or read.
    #[error("cannot read the {what} {}: {source}", path.display())]
    Io {
        /// What the file is for ("password file").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// Someone other than its owner may change the file.
    #[error(
        "the {what} {} can be changed by other users (mode {mode:04o}), so cairn does not use it: \
         make it writable by its owner only (chmod go-w {})",
        path.display(),
        path.display()
    )]
    WritableByOthers {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file belongs to another user, who may change it.
    #[error(
        "the {what} {} belongs to another user (uid {uid}), so cairn does not use it: \
         it must belong to you (uid {me}) or to root",
        path.display()
    )]
    ForeignOwner {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// The user cairn runs as.
        me: u32,
    },
    /// The file is larger than [`PRIVATE_FILE_MAX`].
    #[error("the {what} {} is larger than {PRIVATE_FILE_MAX} bytes", path.display())]
    TooLarge {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
}

/// Reads a file that holds a secret or decides what cairn runs (a password
/// file, a configuration file), refusing it unless only its owner may write
/// it and the owner is the user cairn runs as or root. Another user who
/// could change such a file could make cairn run a command of theirs or use
/// a password of theirs. The checks are made on the opened file, so it
/// cannot be swapped between the check and the read. The content is wiped
/// from memory when dropped.
pub fn read_private_file(path: &Path, what: &'static str) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
    let io = |source| SecretsError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(SecretsError::ForeignOwner {
            what,
            path: path.to_path_buf(),
            uid: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(SecretsError::WritableByOthers {
            what,
            path: path.to_path_buf(),
            mode: meta.mode() & 0o7777,
        });
    }
    if meta.len() > PRIVATE_FILE_MAX {
        return Err(SecretsError::TooLarge {
            what,
            path: path.to_path_buf(),
        });
    }
    // Room for all of it up front: a growing buffer would leave copies of
    // the secret behind in freed memory.
    let mut buf = Zeroizing::new(Vec::with_capacity(PRIVATE_FILE_MAX as usize + 1));
    (&mut f).take(PRIVATE_FILE_MAX + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > PRIVATE_FILE_MAX {
        return Err(SecretsError::TooLarge {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(buf)
}

/// Whether an option or variable called `name` looks like it carries a secret.
pub fn name_looks_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w))
}

/// Removes every `CAIRN_*` variable from what `cmd` will inherit: the
/// password and its file and command, and whatever secret a future variable
/// carries (a prefix rule rather than a list, so a new variable cannot be
/// forgotten). Everything else is inherited as usual.
pub fn without_cairn_env(cmd: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with(SECRET_ENV_PREFIX) {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// `argv` with the values that look like secrets replaced by [`MASK`].
///
/// - `--name=value`, `-name=value` and `NAME=value` (an assignment, as given
///   to `env`): the value is masked when the name looks secret
///   ([`name_looks_secret`]);
/// - `--name` or `-name` without `=` whose name looks secret: the next
///   argument is masked, whatever it is;
/// - `scheme://user:password@host`: the password is masked;
/// - an argument holding a shell command (any other argument with
///   whitespace, as in `sh -c "..."`, or the value of a non-secret option
///   with whitespace) is split into words (quotes respected) and each word
///   follows the same rules. A secret value is masked whole, spaces and all.
///
/// Masking a masked argv changes nothing. Single-letter options (`-p`) are
/// not recognised: their meaning depends on the program.
pub fn mask_argv(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut mask_next = false;
    for arg in argv {
        if mask_next {
            out.push(MASK.to_string());
            mask_next = false;
            continue;
        }
        let (masked, next) = match mask_word(arg) {
            Some(r) => r,
            None if arg.chars().any(char::is_whitespace) => (mask_script(arg), false),
            None => (mask_url_passwords(arg), false),
        };
        out.push(masked);
        mask_next = next;
    }
    out
}

/// The masked form of `word` if it is an option or an assignment, and
/// whether the word after it is a secret; `None` for anything else.
fn mask_word(word: &str) -> Option<(String, bool)> {
    let (dashes, body) = match word.find(|c| c != '-') {
        Some(0) => ("", word),
        Some(i) if i <= 2 => word.split_at(i),
        // "-", "--", "---x": not an option.
        _ => return None,
    };
    match body.split_once('=') {
        Some((name, value)) if is_name(name) => {
            if name_looks_secret(name) {
                Some((format!("{dashes}{name}={MASK}"), false))
            } else if value.chars().any(char::is_whitespace) {
                // `--cmd=pg_dump --password x`: the value is a command too.
                Some((format!("{dashes}{name}={}", mask_script(value)), false))
            } else {
                Some((format!("{dashes}{name}={}", mask_url_passwords(value)), false))
            }
        }
        // `--no-password` (pg_dump's never-prompt flag) negates an option
        // and takes no value: the word after it (the database) is no secret.
        None if !dashes.is_empty() && is_name(body) => Some((
            word.to_string(),
            name_looks_secret(body) && !body.to_ascii_lowercase().starts_with("no-"),
        )),
        _ => None,
    }
}

/// Option and variable names: letters, digits, `-`, `_`, `.`; not a single letter.
fn is_name(s: &str) -> bool {
    s.chars().count() > 1
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A shell command: each word masked by the argv rules, the text between
/// words kept as it was.
fn mask_script(script: &str) -> String {
    let mut out = String::with_capacity(script.len());
    let mut mask_next = false;
    let mut rest = script;
    while !rest.is_empty() {
        let start = rest.find(|c: char| !c.is_whitespace()).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        if rest.is_empty() {
            break;
        }
        let end = word_end(rest);
        let word = &rest[..end];
        rest = &rest[end..];
        if mask_next {
            out.push_str(MASK);
            mask_next = false;
            continue;
        }
        match mask_word(word) {
            Some((masked, next)) => {
                out.push_str(&masked);
                mask_next = next;
            }
            None => out.push_str(&mask_url_passwords(word)),
        }
    }
    out
}

/// Where the shell word at the start of `s` ends: at unquoted whitespace.
fn word_end(s: &str) -> usize {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match (quote, c) {
            (Some('\''), '\'') => quote = None,
            (Some('\''), _) => {}
            (_, '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, c) if c.is_whitespace() => return i,
            (None, _) => {}
        }
    }
    s.len()
}

/// Replaces the password of every `scheme://user:password@host` in `s`.
fn mask_url_passwords(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '\'' | '"') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority
            .rfind('@')
            .and_then(|a| authority[..a].find(':').map(|c| (c, a)))
        {
            Some((colon, at)) => {
                out.push_str(&authority[..=colon]);
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(argv: &[&str]) -> Vec<String> {
        mask_argv(&argv.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn option_values_that_look_secret_are_masked_in_both_forms() {
        assert_eq!(
            mask(&["pg_dump", "--password", "hunter2", "--host", "db", "--dbname=app"]),
            ["pg_dump", "--password", "***", "--host", "db", "--dbname=app"]
        );
        assert_eq!(
            mask(&[
                "tool",
                "--api-token=abc",
                "-secret-key",
                "k",
                "--AUTH",
                "x",
                "--verbose"
            ]),
            [
                "tool",
                "--api-token=***",
                "-secret-key",
                "***",
                "--AUTH",
                "***",
                "--verbose"
            ]
        );
        // The argument after such an option is masked whatever it looks like.
        assert_eq!(mask(&["x", "--passwd", "--x"]), ["x", "--passwd", "***"]);
        // A negated option takes no value.
        assert_eq!(
            mask(&["pg_dump", "--no-password", "shop"]),
            ["pg_dump", "--no-password", "shop"]
        );
        // Assignments, as given to `env`.
        assert_eq!(
            mask(&["env", "PGPASSWORD=hunter2", "LANG=C", "pg_dump"]),
            ["env", "PGPASSWORD=***", "LANG=C", "pg_dump"]
        );
        // Single letters and non-options are left alone.
        assert_eq!(
            mask(&["mysqldump", "-p", "x", "keyfile"]),
            ["mysqldump", "-p", "x", "keyfile"]
        );
    }

    #[test]
    fn url_passwords_are_masked_and_the_rest_kept() {
        assert_eq!(
            mask(&[
                "curl",
                "https://alice:s3cr3t@example.com/a?b",
                "ftp://bob@h/x",
                "--url=s3://k:v@h"
            ]),
            [
                "curl",
                "https://alice:***@example.com/a?b",
                "ftp://bob@h/x",
                "--url=s3://k:***@h"
            ]
        );
        assert_eq!(
            mask(&["x", "a://u:p@h b://u2:p2@h2"]),
            ["x", "a://u:***@h b://u2:***@h2"]
        );
    }

    #[test]
    fn shell_scripts_are_masked_word_by_word() {
        assert_eq!(
            mask(&[
                "sh",
                "-c",
                "env PGPASSWORD='a b' pg_dump --password \"c d\" --user=me | gzip"
            ]),
            ["sh", "-c", "env PGPASSWORD=*** pg_dump --password *** --user=me | gzip"]
        );
        // A secret option or assignment whose value has spaces is masked
        // whole, whatever follows; another one's value is a command too.
        assert_eq!(mask(&["x", "--token=a b c"]), ["x", "--token=***"]);
        assert_eq!(mask(&["sh", "-c", "TOKEN=a b c"]), ["sh", "-c", "TOKEN=***"]);
        assert_eq!(
            mask(&["x", "--run=dump --password p 'q r'"]),
            ["x", "--run=dump --password *** 'q r'"]
        );
    }

    #[test]
    fn masking_twice_changes_nothing_and_plain_argv_is_unchanged() {
        let argv = [
            "sh",
            "-c",
            "env TOKEN=t x --key k https://u:p@h/ --n=1",
            "--password",
            "p",
        ];
        let once = mask(&argv);
        assert_eq!(mask_argv(&once), once);
        let plain = ["tar", "-cf", "-", "--exclude=*.tmp", "/srv/data", "a=b"];
        assert_eq!(mask(&plain), plain);
    }

    /// A snapshot of a command: argv masked in the stored object, and an
    /// object stored unmasked (as before the rule) is masked when read.
    #[test]
    fn snapshots_are_masked_when_stored_and_when_read() {
        use crate::backend::ObjectKind;
        use crate::blob::{self, Aad};
        use crate::id::TreeId;
        use crate::snapshot::{Snapshot, SourceKind, Summary, SNAPSHOT_KIND};

        let repo = crate::testing::memory_repo();
        let argv: Vec<String> = ["pg_dump", "--password", "hunter2", "db"].map(String::from).to_vec();
        let masked: Vec<String> = ["pg_dump", "--password", MASK, "db"].map(String::from).to_vec();
        let snap = Snapshot {
            time_ns: 1,
            host: "h".into(),
            user: "u".into(),
            uid: 0,
            gid: 0,
            tags: vec![],
            paths: vec!["d".into()],
            excludes: vec![],
            source: SourceKind::Command {
                argv: argv.clone(),
                filename: "d".into(),
            },
            tree: TreeId::from_bytes([1; 32]),
            parent: None,
            program_version: "t".into(),
            summary: Summary::default(),
            rewritten_from: None,
            details: Default::default(),
            chunk_sizes: None,
            copied_from: None,
        };
        let stored_argv = |name: &str| {
            let bytes = repo.backend().read(ObjectKind::Snapshot, name).unwrap();
            let plain = blob::open(repo.keys(), Aad::Object(SNAPSHOT_KIND), &bytes).unwrap();
            match crate::snapshot::decode(&plain).unwrap().source {
                SourceKind::Command { argv, .. } => argv,
                other => panic!("{other:?}"),
            }
        };

        let id = repo.save_snapshot(&snap).unwrap();
        assert_eq!(stored_argv(&id.to_hex()), masked);

        // As an older program stored it: unmasked on disk, masked when read.
        let (old, _) = repo.save_file(&snap).unwrap();
        assert_eq!(stored_argv(&old.to_hex()), argv);
        let read = repo.load_snapshot(&crate::id::SnapshotId::from(old)).unwrap();
        assert_eq!(
            read.source,
            SourceKind::Command {
                argv: masked,
                filename: "d".into(),
            }
        );
    }
}
