//! Where the S3 access key and secret come from, and reading them without
//! ever quoting them.

use std::fmt;
use std::path::PathBuf;

use aws_sdk_s3::config::Credentials;
use zeroize::Zeroizing;

use crate::backend::BackendError;

/// Where the access key and secret come from. Never from a command-line
/// argument; the secret is never logged or printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum S3Credentials {
    /// The standard AWS chain: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`,
    /// the shared credentials and config files (`AWS_PROFILE`,
    /// `credential_process`), web identity, ECS and EC2 instance roles.
    #[default]
    Chain,
    /// A file holding either two lines (access key id, then secret key) or
    /// `key=value` lines `aws_access_key_id`, `aws_secret_access_key` and
    /// optionally `aws_session_token`.
    File(PathBuf),
    /// A command (run with `sh -c`) that prints the same format as
    /// [`S3Credentials::File`] on standard output.
    Command(String),
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S3Credentials::Chain => f.write_str("Chain"),
            S3Credentials::File(p) => f.debug_tuple("File").field(p).finish(),
            // The command line itself might embed a secret: never printed.
            S3Credentials::Command(_) => f.write_str("Command(<hidden>)"),
        }
    }
}

/// Reads credentials in the documented format: two lines, or `key=value`
/// lines. Error messages never quote the content.
fn parse_credentials(text: &str, source: &str) -> Result<Credentials, String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .collect();
    let (key, secret, token) = if lines.iter().any(|l| l.contains('=')) {
        let (mut key, mut secret, mut token) = (None, None, None);
        for l in &lines {
            let Some((k, v)) = l.split_once('=') else {
                return Err(format!(
                    "{source}: a line without '=' among key=value lines; use aws_access_key_id=... and aws_secret_access_key=..."
                ));
            };
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "aws_access_key_id" => key = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                // Other keys of an AWS credentials file (region, ...) are not secrets.
                _ => {}
            }
        }
        (key, secret, token)
    } else {
        (
            lines.first().map(|s| s.to_string()),
            lines.get(1).map(|s| s.to_string()),
            None,
        )
    };
    match (key, secret) {
        (Some(k), Some(s)) if !k.is_empty() && !s.is_empty() => Ok(Credentials::new(k, s, token, None, "cairn")),
        _ => Err(format!(
            "{source} holds no access key and secret: it must hold two lines (access key id, secret key) \
             or the lines aws_access_key_id=... and aws_secret_access_key=..."
        )),
    }
}

/// The credentials `c` names, read now; `None` leaves them to the AWS chain.
pub(super) fn load_credentials(c: &S3Credentials, location: &str) -> Result<Option<Credentials>, BackendError> {
    let fail = |message: String| BackendError::Denied {
        path: location.to_string(),
        message,
    };
    match c {
        S3Credentials::Chain => Ok(None),
        S3Credentials::File(p) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(p)
                    .map_err(|e| fail(format!("cannot read the S3 credentials file {}: {e}", p.display())))?,
            );
            parse_credentials(&text, &format!("S3 credentials file {}", p.display()))
                .map(Some)
                .map_err(fail)
        }
        S3Credentials::Command(cmd) => {
            let out = crate::secrets::without_cairn_env(&mut std::process::Command::new("sh"))
                .arg("-c")
                .arg(cmd)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|e| fail(format!("cannot run the S3 credentials command: {e}")))?;
            let text = Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned());
            if !out.status.success() {
                return Err(fail(format!(
                    "the S3 credentials command failed ({}); its messages are above",
                    out.status
                )));
            }
            parse_credentials(&text, "the output of the S3 credentials command")
                .map(Some)
                .map_err(fail)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::backend::s3::S3Options;

    #[test]
    fn parses_credentials_in_both_formats() {
        let c = parse_credentials("AKID\nSECRET\n", "t").unwrap();
        assert_eq!((c.access_key_id(), c.secret_access_key()), ("AKID", "SECRET"));
        let c = parse_credentials(
            "[default]\naws_access_key_id = AK\naws_secret_access_key=SK\naws_session_token=T\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            (c.access_key_id(), c.secret_access_key(), c.session_token()),
            ("AK", "SK", Some("T"))
        );
        let e = parse_credentials("ONLYONE-SECRETISH\n", "t").unwrap_err();
        assert!(!e.contains("SECRETISH"), "{e}");
        let e = parse_credentials("aws_access_key_id=AK\nsecret-without-key\n", "t").unwrap_err();
        assert!(!e.contains("secret-without-key"), "{e}");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let o = S3Options {
            credentials: S3Credentials::Command("echo AKID; echo TOPSECRET".into()),
            ..Default::default()
        };
        let s = format!("{o:?}");
        assert!(!s.contains("TOPSECRET"), "{s}");
        let c = parse_credentials("AKID\nTOPSECRET\n", "t").unwrap();
        assert!(!format!("{c:?}").contains("TOPSECRET"));
    }
}
