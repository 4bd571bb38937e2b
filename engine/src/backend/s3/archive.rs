//! Archive storage classes: whether an object can be read now, and asking
//! S3 to make an archived one readable (RestoreObject).

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{GlacierJobParameters, RestoreRequest, Tier};

use super::S3Backend;
#[cfg(doc)]
use crate::backend::Backend;
use crate::backend::{ArchiveState, BackendError, ObjectKind, RetrievalRequest, RetrievalTier};

impl S3Backend {
    /// HeadObject's storage class and restore header, read as an
    /// [`ArchiveState`]; a missing object is `NotFound`.
    pub(super) fn state(&self, kind: ObjectKind, name: &str) -> Result<ArchiveState, BackendError> {
        let key = self.key(kind, name);
        let Some((_, class, restore)) = self.run(self.head(&key))? else {
            return Err(BackendError::NotFound { path: key });
        };
        Ok(archive_state_of(class.as_deref(), restore.as_deref()))
    }

    /// RestoreObject for `kind`/`name`; see [`Backend::request_retrieval`]
    /// for what callers may rely on.
    pub(super) fn retrieve(&self, kind: ObjectKind, name: &str, how: RetrievalRequest) -> Result<(), BackendError> {
        let key = self.key(kind, name);
        let days = i32::try_from(how.days.max(1)).map_err(|_| BackendError::Other {
            path: key.clone(),
            message: format!("{} days is too long a retrieval", how.days),
        })?;
        let tier = match how.tier {
            RetrievalTier::Expedited => Tier::Expedited,
            RetrievalTier::Standard => Tier::Standard,
            RetrievalTier::Bulk => Tier::Bulk,
        };
        let job = GlacierJobParameters::builder()
            .tier(tier)
            .build()
            .map_err(|e| BackendError::Other {
                path: key.clone(),
                message: format!("cannot build the retrieval request: {e}"),
            })?;
        let result = self.run(async {
            let _p = self.permit(&key).await.map_err(|e| (String::new(), None, e))?;
            self.client
                .restore_object()
                .bucket(&self.bucket)
                .key(&key)
                .restore_request(RestoreRequest::builder().days(days).glacier_job_parameters(job).build())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    let code = e.code().unwrap_or("").to_string();
                    let status = e.raw_response().map(|r| r.status().as_u16());
                    (code, status, self.fail(&key, e))
                })
        });
        match result {
            Ok(()) => Ok(()),
            // Asked before and still running: that is what the caller wants.
            Err((code, _, _)) if code == "RestoreAlreadyInProgress" => Ok(()),
            // Not in an archive class (or already readable): nothing to retrieve.
            Err((code, _, e)) if code == "InvalidObjectState" => match self.state(kind, name)? {
                ArchiveState::Readable => Ok(()),
                _ => Err(e),
            },
            // A server without archive classes (SeaweedFS, for one) may not
            // know RestoreObject at all; a readable object needs none.
            Err((_, Some(405 | 501), _)) => match self.state(kind, name)? {
                ArchiveState::Readable => Ok(()),
                _ => Err(BackendError::Other {
                    path: key,
                    message: "this S3 server cannot retrieve objects from archive storage (RestoreObject is not \
                              supported)"
                        .into(),
                }),
            },
            Err((_, _, e)) => Err(e),
        }
    }
}

/// Whether an object of storage `class` with the `x-amz-restore` header
/// `restore` can be read.
fn archive_state_of(class: Option<&str>, restore: Option<&str>) -> ArchiveState {
    let class = match class {
        Some(c @ ("GLACIER" | "DEEP_ARCHIVE")) => c.to_string(),
        _ => return ArchiveState::Readable,
    };
    match restore {
        None => ArchiveState::Archived { class },
        Some(r) if r.replace(' ', "").contains("ongoing-request=\"true\"") => ArchiveState::Retrieving { class },
        Some(_) => ArchiveState::Readable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_states_follow_the_restore_header() {
        assert_eq!(archive_state_of(Some("STANDARD"), None), ArchiveState::Readable);
        assert_eq!(archive_state_of(Some("GLACIER_IR"), None), ArchiveState::Readable);
        assert_eq!(archive_state_of(None, None), ArchiveState::Readable);
        assert_eq!(
            archive_state_of(Some("GLACIER"), None),
            ArchiveState::Archived {
                class: "GLACIER".into()
            }
        );
        assert_eq!(
            archive_state_of(Some("DEEP_ARCHIVE"), Some("ongoing-request=\"true\"")),
            ArchiveState::Retrieving {
                class: "DEEP_ARCHIVE".into()
            }
        );
        assert_eq!(
            archive_state_of(
                Some("GLACIER"),
                Some("ongoing-request=\"false\", expiry-date=\"Fri, 21 Dec 2012 00:00:00 GMT\"")
            ),
            ArchiveState::Readable
        );
    }
}
