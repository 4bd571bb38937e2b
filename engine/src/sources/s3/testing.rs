//! A plain S3 client for the end-to-end tests of the bucket source: make a
//! bucket, put objects with metadata, read them back. Only with the
//! `testing` feature; not a stable API.

use std::collections::HashMap;
use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};

use crate::backend::s3::{S3Backend, S3Credentials, S3Options};
use crate::backend::{Backend, BackendError};

/// One object as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestObject {
    /// Its bytes.
    pub body: Vec<u8>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// User metadata.
    pub metadata: HashMap<String, String>,
}

/// A bucket on a test server.
pub struct TestBucket {
    backend: S3Backend,
}

impl TestBucket {
    /// `location` is `s3:http://HOST:PORT/BUCKET`; `credentials` a file in
    /// the format cairn reads.
    pub fn open(location: &str, credentials: &Path) -> Result<Self, BackendError> {
        let opts = S3Options {
            region: Some("us-east-1".into()),
            credentials: S3Credentials::File(credentials.to_path_buf()),
            ..Default::default()
        };
        Ok(Self {
            backend: S3Backend::open(location, &opts)?,
        })
    }

    fn err<E>(&self, what: &str, e: aws_sdk_s3::error::SdkError<E>) -> BackendError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.backend.fail(what, e)
    }

    /// Creates the bucket.
    pub fn create(&self) -> Result<(), BackendError> {
        let b = &self.backend;
        b.run(b.client().create_bucket().bucket(b.bucket()).send())
            .map_err(|e| self.err(b.bucket(), e))?;
        Ok(())
    }

    /// Turns versioning on.
    pub fn enable_versioning(&self) -> Result<(), BackendError> {
        let b = &self.backend;
        let conf = VersioningConfiguration::builder()
            .status(BucketVersioningStatus::Enabled)
            .build();
        b.run(
            b.client()
                .put_bucket_versioning()
                .bucket(b.bucket())
                .versioning_configuration(conf)
                .send(),
        )
        .map_err(|e| self.err(b.bucket(), e))?;
        Ok(())
    }

    /// Puts an object; returns its version id, if the server gave one.
    pub fn put(
        &self,
        key: &str,
        body: &[u8],
        content_type: Option<&str>,
        metadata: &[(&str, &str)],
    ) -> Result<Option<String>, BackendError> {
        let b = &self.backend;
        let meta: HashMap<String, String> = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let r = b
            .run(
                b.client()
                    .put_object()
                    .bucket(b.bucket())
                    .key(key)
                    .set_content_type(content_type.map(str::to_string))
                    .set_metadata(Some(meta))
                    .body(ByteStream::from(body.to_vec()))
                    .send(),
            )
            .map_err(|e| self.err(key, e))?;
        Ok(r.version_id().map(str::to_string))
    }

    /// Reads an object (a version of it, if given).
    pub fn get(&self, key: &str, version: Option<&str>) -> Result<TestObject, BackendError> {
        let b = &self.backend;
        b.run(async {
            let r = b
                .client()
                .get_object()
                .bucket(b.bucket())
                .key(key)
                .set_version_id(version.map(str::to_string))
                .send()
                .await
                .map_err(|e| self.err(key, e))?;
            let content_type = r.content_type().map(str::to_string);
            let metadata = r.metadata().cloned().unwrap_or_default();
            let body = r
                .body
                .collect()
                .await
                .map_err(|e| BackendError::Transient {
                    path: key.to_string(),
                    message: e.to_string(),
                })?
                .to_vec();
            Ok(TestObject {
                body,
                content_type,
                metadata,
            })
        })
    }

    /// Deletes an object (with versioning on: adds a delete marker).
    pub fn delete(&self, key: &str) -> Result<(), BackendError> {
        let b = &self.backend;
        b.run(b.client().delete_object().bucket(b.bucket()).key(key).send())
            .map_err(|e| self.err(key, e))?;
        Ok(())
    }

    /// Whether a key exists now.
    pub fn exists(&self, key: &str) -> Result<bool, BackendError> {
        let b = &self.backend;
        match b.run(b.client().head_object().bucket(b.bucket()).key(key).send()) {
            Ok(_) => Ok(true),
            Err(e) => match self.err(key, e) {
                BackendError::NotFound { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    /// The location as given.
    pub fn location(&self) -> String {
        self.backend.location()
    }
}
