//! S3 Object Lock: retention on what Cairn writes, deletes that remove an
//! object's versions for real, and the retention dates prune plans with.
//!
//! What the servers do (found on the test servers, see
//! engine/tests/s3_object_lock.rs): in a bucket with Object Lock enabled
//! (versioning is then on), a `DeleteObject` **with** a version id of a
//! version under retention is refused (`AccessDenied`), in both modes
//! (GOVERNANCE only yields to `x-amz-bypass-governance-retention`); a
//! `DeleteObject` **without** a version id is accepted even then, and only
//! adds a delete marker: the object vanishes from listings while its bytes
//! stay stored (and billed). So with `object-lock` set, a removal deletes
//! every version of the key by its id: a pruned pack does not linger as a
//! noncurrent version, and a version still under retention makes the
//! removal fail with [`BackendError::Retained`] instead of silently leaving
//! a delete marker.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::ObjectLockMode as SdkMode;

use super::S3Backend;
use crate::backend::{BackendError, ObjectKind};

/// The Object Lock retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectLockMode {
    /// Nobody, not even the account's root user, can delete an object version
    /// or shorten its retention before the date.
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can delete early; others
    /// cannot. Cairn never bypasses.
    Governance,
}

impl ObjectLockMode {
    /// The S3 name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectLockMode::Compliance => "COMPLIANCE",
            ObjectLockMode::Governance => "GOVERNANCE",
        }
    }
}

impl fmt::Display for ObjectLockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().to_ascii_lowercase())
    }
}

impl FromStr for ObjectLockMode {
    type Err = String;

    /// Parses `compliance` or `governance` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "compliance" => Ok(ObjectLockMode::Compliance),
            "governance" => Ok(ObjectLockMode::Governance),
            _ => Err(format!("unknown object-lock mode {s:?}: use \"compliance\" or \"governance\"")),
        }
    }
}

/// Retention put on every object Cairn writes to the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    /// The mode.
    pub mode: ObjectLockMode,
    /// How long from its write an object stays undeletable (whole days in
    /// the configuration; tests use seconds).
    pub retain: Duration,
}

impl ObjectLock {
    /// Retention of `days` days in `mode`.
    pub fn days(mode: ObjectLockMode, days: u32) -> Self {
        Self {
            mode,
            retain: Duration::from_secs(u64::from(days) * 86_400),
        }
    }

    /// Whether objects of `kind` carry retention. Locks do not: every
    /// maintenance command removes its own lock when it ends (and `unlock`
    /// removes stale ones), which retention would forbid, leaving the
    /// repository locked for the whole retention period. Deletion records do
    /// not either: they hold no backup data (deleting one only means some
    /// garbage is collected later), and prune removes its own records after
    /// two grace periods, far sooner than any sensible retention.
    pub fn applies_to(kind: ObjectKind) -> bool {
        !matches!(kind, ObjectKind::Lock | ObjectKind::Deletion)
    }
}

/// A Unix-ns time as RFC 3339 (UTC, seconds), for messages.
fn rfc3339(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| ns.to_string())
}

fn date_ns(d: &DateTime) -> Option<i64> {
    i64::try_from(d.as_nanos()).ok()
}

/// One stored version of a key (or a delete marker).
struct Version {
    id: String,
    marker: bool,
}

impl S3Backend {
    /// The mode and retention date to send with a write of `kind`, if any.
    pub(super) fn retention_for(&self, kind: ObjectKind) -> Option<(SdkMode, DateTime)> {
        let lock = self.object_lock?;
        if !ObjectLock::applies_to(kind) {
            return None;
        }
        let until = std::time::SystemTime::now() + lock.retain;
        Some((SdkMode::from(lock.mode.as_str()), DateTime::from(until)))
    }

    /// Whether removals and listings go the Object Lock way.
    pub(super) fn locked(&self, kind: ObjectKind) -> bool {
        self.object_lock.is_some() && ObjectLock::applies_to(kind)
    }

    /// The retention date (Unix ns) of the current version of `key`, if it
    /// has one.
    pub(super) async fn retention_of(&self, key: &str, version: Option<&str>) -> Result<Option<i64>, BackendError> {
        let _p = self.permit(key).await?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
        {
            Ok(h) => Ok(h.object_lock_retain_until_date().and_then(date_ns)),
            Err(e) => match self.fail(key, e) {
                BackendError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Fills in the retention dates of listed objects (one `HeadObject`
    /// each, `connections` at a time): S3 listings do not carry them.
    pub(super) async fn fill_retention(
        &self,
        prefix_of: impl Fn(&str) -> String,
        out: &mut [crate::backend::ObjectInfo],
    ) -> Result<(), BackendError> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, o) in out.iter().enumerate() {
            let key = prefix_of(&o.name);
            let (client, bucket, permits) = (self.client.clone(), self.bucket.clone(), self.permits.clone());
            tasks.spawn(async move {
                let _p = permits.acquire_owned().await.map_err(|_| BackendError::Other {
                    path: key.clone(),
                    message: "the S3 client is shutting down".into(),
                })?;
                match client.head_object().bucket(&bucket).key(&key).send().await {
                    Ok(h) => Ok((i, h.object_lock_retain_until_date().and_then(date_ns))),
                    Err(e) => match super::error::classify(&key, &bucket, e) {
                        // Removed since the listing: nothing retains it.
                        BackendError::NotFound { .. } => Ok((i, None)),
                        other => Err(other),
                    },
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            let (i, until) = r.map_err(|e| BackendError::Other {
                path: self.location.clone(),
                message: format!("a retention look-up stopped unexpectedly: {e}"),
            })??;
            out[i].retained_until_ns = until;
        }
        Ok(())
    }

    /// `Backend::extend_retention`: moves the retention of the current
    /// version of `key` (dated `until_ns` by the listing) to now + the
    /// period when less than half the period is left (kopia's rule: a
    /// nightly prune then extends each object about once per half period,
    /// not every night). `PutObjectRetention` in the configured mode, never
    /// bypassing governance: S3 refuses to shorten a date, so an extension
    /// can only add protection.
    pub(super) async fn extend_retention_of(
        &self,
        key: &str,
        kind: ObjectKind,
        until_ns: i64,
        dry_run: bool,
    ) -> Result<Option<i64>, BackendError> {
        use aws_sdk_s3::types::{ObjectLockRetention, ObjectLockRetentionMode};
        let Some(lock) = self.object_lock else { return Ok(None) };
        if !ObjectLock::applies_to(kind) {
            return Ok(None);
        }
        let period = i64::try_from(lock.retain.as_nanos()).unwrap_or(i64::MAX);
        let now = crate::time::now_ns();
        if until_ns >= now.saturating_add(period / 2) {
            return Ok(None);
        }
        let target = std::time::SystemTime::now() + lock.retain;
        let target_dt = DateTime::from(target);
        let target_ns = date_ns(&target_dt).unwrap_or(i64::MAX);
        if target_ns <= until_ns {
            return Ok(None);
        }
        if dry_run {
            return Ok(Some(target_ns));
        }
        let _p = self.permit(key).await?;
        self.client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(key)
            .retention(
                ObjectLockRetention::builder()
                    .mode(ObjectLockRetentionMode::from(lock.mode.as_str()))
                    .retain_until_date(target_dt)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.fail(key, e))?;
        Ok(Some(target_ns))
    }

    /// Every version and delete marker stored under exactly `key`.
    async fn versions(&self, key: &str) -> Result<Vec<Version>, BackendError> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let resp = {
                let _p = self.permit(key).await?;
                self.client
                    .list_object_versions()
                    .bucket(&self.bucket)
                    .prefix(key)
                    .set_key_marker(key_marker.take())
                    .set_version_id_marker(id_marker.take())
                    .send()
                    .await
                    .map_err(|e| self.fail(key, e))?
            };
            // The prefix also matches longer keys: only this one counts.
            for v in resp.versions() {
                if let (Some(k), Some(id)) = (v.key(), v.version_id()) {
                    if k == key {
                        out.push(Version {
                            id: id.to_string(),
                            marker: false,
                        });
                    }
                }
            }
            for m in resp.delete_markers() {
                if let (Some(k), Some(id)) = (m.key(), m.version_id()) {
                    if k == key {
                        out.push(Version {
                            id: id.to_string(),
                            marker: true,
                        });
                    }
                }
            }
            if resp.is_truncated() != Some(true) {
                break;
            }
            key_marker = resp.next_key_marker().map(str::to_string);
            id_marker = resp.next_version_id_marker().map(str::to_string);
            if key_marker.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Removes `key` for real: every version by its id (delete markers
    /// too). `NotFound` when no version holds data; `Retained` when a
    /// version is under retention (the server refuses, with `AccessDenied`
    /// on the servers tried, so the date is looked up to tell the two
    /// apart).
    pub(super) async fn remove_versions(&self, key: &str) -> Result<(), BackendError> {
        let versions = self.versions(key).await?;
        if !versions.iter().any(|v| !v.marker) {
            // Already deleted (perhaps by a plain delete that left a marker):
            // the markers go, and the object counts as missing.
            for v in &versions {
                self.delete_version(key, &v.id).await?;
            }
            return Err(BackendError::NotFound { path: key.to_string() });
        }
        // Data versions first: a refused one leaves the object as it was.
        for v in versions.iter().filter(|v| !v.marker) {
            if let Err(e) = self.delete_version(key, &v.id).await {
                if let BackendError::Denied { .. } = e {
                    if let Some(until) = self.retention_of(key, Some(&v.id)).await? {
                        if until > crate::time::now_ns() {
                            return Err(BackendError::Retained {
                                path: key.to_string(),
                                until: rfc3339(until),
                            });
                        }
                    }
                }
                return Err(e);
            }
        }
        for v in versions.iter().filter(|v| v.marker) {
            self.delete_version(key, &v.id).await?;
        }
        Ok(())
    }

    async fn delete_version(&self, key: &str, version: &str) -> Result<(), BackendError> {
        let _p = self.permit(key).await?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .version_id(version)
            .send()
            .await
            .map_err(|e| self.fail(key, e))?;
        Ok(())
    }

    /// The retention date (Unix ns) of an object's current version, if any.
    #[cfg(any(test, feature = "testing"))]
    pub fn retained_until(&self, kind: ObjectKind, name: &str) -> Result<Option<i64>, BackendError> {
        let key = self.key(kind, name);
        self.run(async { self.retention_of(&key, None).await })
    }

    /// Number of stored versions (delete markers included) under an object's
    /// key: tests check that nothing lingers as a noncurrent version.
    #[cfg(any(test, feature = "testing"))]
    pub fn version_count(&self, kind: ObjectKind, name: &str) -> Result<usize, BackendError> {
        let key = self.key(kind, name);
        self.run(async { Ok(self.versions(&key).await?.len()) })
    }

    /// Moves the GOVERNANCE retention of every version under the prefix to
    /// `until` (earlier too, bypassing governance): tests make the date pass
    /// this way instead of waiting for days.
    #[cfg(any(test, feature = "testing"))]
    pub fn set_governance_retention_all(&self, until: std::time::SystemTime) -> Result<usize, BackendError> {
        use aws_sdk_s3::types::{ObjectLockRetention, ObjectLockRetentionMode};
        self.run(async {
            let resp = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .send()
                .await
                .map_err(|e| self.fail(&self.prefix, e))?;
            let mut n = 0;
            for v in resp.versions() {
                let (Some(k), Some(id)) = (v.key(), v.version_id()) else { continue };
                if self.retention_of(k, Some(id)).await?.is_none() {
                    continue;
                }
                self.client
                    .put_object_retention()
                    .bucket(&self.bucket)
                    .key(k)
                    .version_id(id)
                    .bypass_governance_retention(true)
                    .retention(
                        ObjectLockRetention::builder()
                            .mode(ObjectLockRetentionMode::Governance)
                            .retain_until_date(DateTime::from(until))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| self.fail(k, e))?;
                n += 1;
            }
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_exempt_kinds() {
        assert_eq!("Compliance".parse::<ObjectLockMode>(), Ok(ObjectLockMode::Compliance));
        assert_eq!("governance".parse::<ObjectLockMode>(), Ok(ObjectLockMode::Governance));
        assert!("legal-hold".parse::<ObjectLockMode>().is_err());
        assert!(!ObjectLock::applies_to(ObjectKind::Lock));
        assert!(!ObjectLock::applies_to(ObjectKind::Deletion));
        for k in [
            ObjectKind::Config,
            ObjectKind::Key,
            ObjectKind::Snapshot,
            ObjectKind::Index,
            ObjectKind::DataPack,
            ObjectKind::TreePack,
        ] {
            assert!(ObjectLock::applies_to(k), "{k}");
        }
        assert_eq!(ObjectLock::days(ObjectLockMode::Governance, 2).retain, Duration::from_secs(172_800));
        assert_eq!(rfc3339(86_400_000_000_000), "1970-01-02T00:00:00Z");
    }
}
