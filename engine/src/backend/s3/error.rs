//! What an S3 error means for the caller: each SDK error becomes the
//! [`BackendError`] kind that says whether retrying can help, with a message
//! that says what to do.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::backend::BackendError;

/// An error and its sources as one line (`a: b: c`), without the debug
/// dumps of the SDK's own formatting, and without repeating a message that a
/// source already gave.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// The error codes that mean the credentials (or their rights) are wrong.
const DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AccountProblem",
    "AllAccessDisabled",
    "InvalidSecurity",
    "Forbidden",
];

/// Error codes that retrying may cure.
const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
    "ConditionalRequestConflict",
    // Bytes damaged on the way: the server refused them; sending again helps.
    "BadDigest",
    "InvalidDigest",
    "XAmzContentChecksumMismatch",
    "XAmzContentSHA256Mismatch",
    "IncompleteBody",
];

/// Maps an SDK error to a [`BackendError`] kind, naming `path` and saying
/// what to do.
pub(super) fn classify<E>(path: &str, bucket: &str, e: SdkError<E>) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let path = path.to_string();
    match &e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("");
            let detail = match se.err().message() {
                Some(m) if !m.is_empty() => format!("{code}: {m}"),
                _ if !code.is_empty() => code.to_string(),
                _ => format!("HTTP status {status}"),
            };
            classify_service(path, bucket, status, code, &detail)
        }
        SdkError::TimeoutError(_) => BackendError::Transient {
            path,
            message: "the request to S3 timed out".into(),
        },
        SdkError::ResponseError(_) => BackendError::Transient {
            path,
            message: format!("S3 sent an unreadable response: {}", error_chain(&e)),
        },
        SdkError::DispatchFailure(d) => {
            let text = error_chain(&e);
            if d.is_io() || d.is_timeout() {
                BackendError::Transient {
                    path,
                    message: format!("cannot reach the S3 server: {text}"),
                }
            } else if text.contains("credential") && !text.contains("timed out") {
                BackendError::Denied {
                    path,
                    message: format!(
                        "no usable S3 credentials ({text}); give a credentials file or command in the repository's \
                         s3 settings, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
                    ),
                }
            } else if d.is_user() {
                BackendError::Other {
                    path,
                    message: format!("the S3 request could not be sent: {text}"),
                }
            } else {
                BackendError::Transient {
                    path,
                    message: format!("the S3 request failed: {text}"),
                }
            }
        }
        _ => BackendError::Other {
            path,
            message: format!("the S3 request could not be made: {}", error_chain(&e)),
        },
    }
}

fn classify_service(path: String, bucket: &str, status: u16, code: &str, detail: &str) -> BackendError {
    match code {
        "NoSuchKey" => return BackendError::NotFound { path },
        "NoSuchBucket" => {
            return BackendError::Denied {
                path,
                message: format!(
                    "the bucket {bucket:?} does not exist; create it first or correct the repository location"
                ),
            }
        }
        "InvalidObjectState" => return BackendError::Archived { path },
        "PreconditionFailed" => return BackendError::AlreadyExists { path },
        // The caller (read_range) fills in the real numbers.
        "InvalidRange" => {
            return BackendError::OutOfRange {
                path,
                offset: 0,
                len: 0,
                size: 0,
            }
        }
        "RequestTimeTooSkewed" => {
            return BackendError::Other {
                path,
                message: format!("the server refused the request because this machine's clock is wrong ({detail}); set the clock right (NTP)"),
            }
        }
        "InvalidStorageClass" => {
            return BackendError::Other {
                path,
                message: format!("the server does not accept this storage class ({detail}); choose another data storage class"),
            }
        }
        c if DENIED_CODES.contains(&c) => {
            return BackendError::Denied {
                path,
                message: format!(
                    "access denied ({detail}); check the S3 credentials (access key id and secret key) and that \
                     they may read and write bucket {bucket:?}"
                ),
            }
        }
        c if TRANSIENT_CODES.contains(&c) => {
            return BackendError::Transient {
                path,
                message: detail.to_string(),
            }
        }
        _ => {}
    }
    match status {
        404 => BackendError::NotFound { path },
        412 => BackendError::AlreadyExists { path },
        416 => BackendError::OutOfRange {
            path,
            offset: 0,
            len: 0,
            size: 0,
        },
        401 | 403 => BackendError::Denied {
            path,
            message: format!(
                "access denied ({detail}); check the S3 credentials (access key id and secret key) and that they \
                 may read and write bucket {bucket:?}"
            ),
        },
        408 | 429 | 500..=599 => BackendError::Transient {
            path,
            message: detail.to_string(),
        },
        _ => BackendError::Other {
            path,
            message: format!("S3 refused the request (HTTP {status}, {detail})"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_map_to_kinds() {
        let c = |status, code| classify_service("k".into(), "b", status, code, "d");
        assert!(matches!(c(404, "NoSuchKey"), BackendError::NotFound { .. }));
        assert!(matches!(c(404, "NotFound"), BackendError::NotFound { .. }));
        assert!(
            matches!(c(404, "NoSuchBucket"), BackendError::Denied { message, .. } if message.contains("does not exist"))
        );
        assert!(matches!(c(403, "InvalidObjectState"), BackendError::Archived { .. }));
        assert!(
            matches!(c(403, "SignatureDoesNotMatch"), BackendError::Denied { message, .. } if message.contains("credentials"))
        );
        assert!(matches!(c(403, ""), BackendError::Denied { .. }));
        assert!(matches!(
            c(412, "PreconditionFailed"),
            BackendError::AlreadyExists { .. }
        ));
        assert!(c(503, "SlowDown").is_retryable());
        assert!(c(500, "InternalError").is_retryable());
        assert!(c(502, "").is_retryable());
        assert!(c(400, "BadDigest").is_retryable());
        assert!(!c(400, "InvalidArgument").is_retryable());
    }
}
