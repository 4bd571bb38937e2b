//! A repository in an S3 bucket (AWS or any S3-compatible server).
//!
//! Locations:
//! - `s3://BUCKET[/PREFIX]`: AWS S3; the region comes from [`S3Options::region`]
//!   or the standard AWS chain (`AWS_REGION`, profile).
//! - `s3:https://HOST[:PORT]/BUCKET[/PREFIX]` and `s3:http://...`: a custom
//!   endpoint, with path-style addressing unless told otherwise.
//!
//! Object keys are `PREFIX/` + [`ObjectKind::path`], so data packs live under
//! `PREFIX/data/xx/...` and everything else elsewhere: a single lifecycle rule
//! on `PREFIX/data/` moves file data (and nothing that a restore needs first)
//! to a cheaper class.
//!
//! The [`Backend`] trait is synchronous; this backend owns a small
//! multi-threaded tokio runtime and blocks on it, so it may be called from any
//! number of threads at once (rayon pools included). At most
//! [`S3Options::connections`] requests are in flight at a time.
//!
//! Writes are exclusive: a `HeadObject` first (for servers that ignore
//! conditional writes), then `PutObject` (or `CompleteMultipartUpload`) with
//! `If-None-Match: *`. On servers that honour the header the write is atomic
//! and exclusive; on servers that ignore it, two writers racing between the
//! `HeadObject` and the upload could both succeed and the later one wins.
//! Repository objects are named by their content (or carry random names), so
//! such a race would store identical bytes. Every upload carries a CRC32
//! checksum that the server verifies, so bytes damaged on the way are
//! refused rather than stored.
//!
//! Retries, bandwidth limits and caches are wrappers ([`super::retry`],
//! [`super::limiter`]); this module never retries by itself (the SDK's own
//! retries are turned off so that every retry is counted in one place). So a
//! multipart upload whose part fails is aborted and, when retried, starts
//! over: objects are packs of tens of MiB, rarely above the threshold.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, GlacierJobParameters, RestoreRequest, StorageClass,
    Tier,
};
use aws_sdk_s3::Client;
use bytes::Bytes;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::{ArchiveState, Backend, BackendError, ObjectInfo, ObjectKind, RetrievalTier};

const MIB: u64 = 1024 * 1024;
/// S3 refuses parts smaller than this (except the last).
const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3 allows at most this many parts per upload.
const MAX_PARTS: u64 = 10_000;
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take until the response headers arrive
/// (including sending its body: at most one part or one object below the
/// multipart threshold). Stalled transfers are caught sooner by the SDK's
/// stalled-stream protection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The storage class for data packs. Everything else (config, keys,
/// snapshots, indexes, tree packs, locks) is always written `STANDARD`, so a
/// restore can find what it needs without retrieving anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataStorageClass {
    /// `STANDARD` (the default).
    #[default]
    Standard,
    /// `STANDARD_IA`: infrequent access, readable at once.
    StandardIa,
    /// `GLACIER_IR`: Glacier Instant Retrieval, readable at once.
    GlacierIr,
    /// `GLACIER` (Flexible Retrieval): must be retrieved before reading.
    Glacier,
    /// `DEEP_ARCHIVE`: must be retrieved (hours) before reading.
    DeepArchive,
}

impl DataStorageClass {
    /// The S3 name of the class.
    pub fn as_str(self) -> &'static str {
        match self {
            DataStorageClass::Standard => "STANDARD",
            DataStorageClass::StandardIa => "STANDARD_IA",
            DataStorageClass::GlacierIr => "GLACIER_IR",
            DataStorageClass::Glacier => "GLACIER",
            DataStorageClass::DeepArchive => "DEEP_ARCHIVE",
        }
    }

    /// The class to send, or `None` for `STANDARD` (no header: servers that
    /// know no classes accept that too).
    fn sdk(self) -> Option<StorageClass> {
        match self {
            DataStorageClass::Standard => None,
            other => Some(StorageClass::from(other.as_str())),
        }
    }
}

impl fmt::Display for DataStorageClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DataStorageClass {
    type Err = String;

    /// Parses `STANDARD`, `STANDARD_IA`, `GLACIER_IR`, `GLACIER` or
    /// `DEEP_ARCHIVE` (any case, `-` for `_`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "STANDARD" => Ok(DataStorageClass::Standard),
            "STANDARD_IA" => Ok(DataStorageClass::StandardIa),
            "GLACIER_IR" => Ok(DataStorageClass::GlacierIr),
            "GLACIER" => Ok(DataStorageClass::Glacier),
            "DEEP_ARCHIVE" => Ok(DataStorageClass::DeepArchive),
            _ => Err(format!(
                "unknown storage class {s:?}: use STANDARD, STANDARD_IA, GLACIER_IR, GLACIER or DEEP_ARCHIVE"
            )),
        }
    }
}

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

/// How to reach and use an S3 bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Options {
    /// The region; default: from the AWS chain for AWS, else `AWS_REGION` or
    /// `us-east-1` for custom endpoints.
    pub region: Option<String>,
    /// An endpoint URL that replaces the one in the location (or turns an
    /// `s3://BUCKET` location into a custom-endpoint one).
    pub endpoint: Option<String>,
    /// Path-style (`https://host/bucket/key`) rather than virtual-hosted
    /// (`https://bucket.host/key`) addressing. Default (`None`): path style
    /// for custom endpoints, virtual-hosted for AWS.
    pub path_style: Option<bool>,
    /// Requests in flight at once (default 8).
    pub connections: usize,
    /// Storage class of data packs (everything else is always `STANDARD`).
    pub data_storage_class: DataStorageClass,
    /// Objects larger than this go up as multipart uploads (default 64 MiB).
    pub multipart_threshold: u64,
    /// Part size of multipart uploads (default 16 MiB, at least 5 MiB).
    pub multipart_part_size: u64,
    /// Where the credentials come from.
    pub credentials: S3Credentials,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            region: None,
            endpoint: None,
            path_style: None,
            connections: 8,
            data_storage_class: DataStorageClass::Standard,
            multipart_threshold: 64 * MIB,
            multipart_part_size: 16 * MIB,
            credentials: S3Credentials::Chain,
        }
    }
}

impl fmt::Debug for S3Options {
    // Written by hand so that nothing secret can ever be printed, whatever
    // fields are added later.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field("connections", &self.connections)
            .field("data_storage_class", &self.data_storage_class)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("multipart_part_size", &self.multipart_part_size)
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// A parsed `s3:` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// `http[s]://host[:port]` for custom endpoints, `None` for AWS.
    pub endpoint: Option<String>,
    /// The bucket.
    pub bucket: String,
    /// The key prefix: empty, or ending in `/`.
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://BUCKET[/PREFIX]` or `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]`.
    pub fn parse(location: &str) -> Result<Self, BackendError> {
        let bad = |why: &str| BackendError::Other {
            path: location.to_string(),
            message: format!(
                "{why}; an S3 location is s3://BUCKET[/PREFIX] (AWS) or s3:https://HOST[:PORT]/BUCKET[/PREFIX]"
            ),
        };
        let rest = location.strip_prefix("s3:").ok_or_else(|| bad("not an s3: location"))?;
        let (endpoint, path) = if let Some(p) = rest.strip_prefix("//") {
            (None, p)
        } else {
            let (scheme, after) = if let Some(a) = rest.strip_prefix("https://") {
                ("https", a)
            } else if let Some(a) = rest.strip_prefix("http://") {
                ("http", a)
            } else {
                return Err(bad("expected s3://BUCKET or s3:http(s)://HOST/BUCKET"));
            };
            let (host, path) = after.split_once('/').unwrap_or((after, ""));
            if host.is_empty() {
                return Err(bad("the endpoint has no host"));
            }
            if host.contains('@') {
                return Err(bad(
                    "credentials do not belong in the location (use a credentials file or command, or the AWS environment)",
                ));
            }
            (Some(format!("{scheme}://{host}")), path)
        };
        let path = path.trim_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket given"));
        }
        if bucket.len() < 3
            || bucket.len() > 63
            || !bucket
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.' || c == b'_')
        {
            return Err(bad(&format!(
                "{bucket:?} is not a valid bucket name (3 to 63 lower-case letters, digits, '-', '.')"
            )));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|seg| seg == "." || seg == "..") || prefix.contains("//") {
            return Err(bad("the prefix may not contain '.', '..' or empty segments"));
        }
        Ok(Self {
            endpoint,
            bucket: bucket.to_string(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
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

fn load_credentials(c: &S3Credentials, location: &str) -> Result<Option<Credentials>, BackendError> {
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
            let out = std::process::Command::new("sh")
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

/// Shuts the runtime down without waiting when the backend goes away, so
/// dropping the backend is safe anywhere (even inside another runtime).
struct RuntimeOwner(Option<tokio::runtime::Runtime>);

impl Drop for RuntimeOwner {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Objects in an S3 bucket under a prefix. See the module documentation.
pub struct S3Backend {
    client: Client,
    handle: tokio::runtime::Handle,
    _runtime: RuntimeOwner,
    bucket: String,
    prefix: String,
    location: String,
    data_class: DataStorageClass,
    /// One permit per request in flight.
    permits: Arc<Semaphore>,
    connections: usize,
    multipart_threshold: u64,
    part_size: u64,
}

impl fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Backend")
            .field("location", &self.location)
            .field("data_class", &self.data_class)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

/// Where one multipart part goes.
struct PartJob {
    number: i32,
    bytes: Bytes,
}

impl S3Backend {
    /// Opens `location` (see the module documentation) with `opts`. Loads
    /// the credentials now (a credentials file or command runs once); does
    /// not contact the server.
    pub fn open(location: &str, opts: &S3Options) -> Result<Self, BackendError> {
        let parsed = S3Location::parse(location)?;
        let endpoint = opts.endpoint.clone().or(parsed.endpoint.clone());
        if let Some(ep) = &endpoint {
            if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                return Err(BackendError::Other {
                    path: location.to_string(),
                    message: format!("the S3 endpoint {ep:?} must start with http:// or https://"),
                });
            }
        }
        let connections = opts.connections.max(1);
        let display = match &endpoint {
            Some(ep) => format!("s3:{}/{}/{}", ep.trim_end_matches('/'), parsed.bucket, parsed.prefix),
            None => format!("s3://{}/{}", parsed.bucket, parsed.prefix),
        };
        let display = display.trim_end_matches('/').to_string();
        let other = |message: String| BackendError::Other {
            path: display.clone(),
            message,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(connections.clamp(2, 4))
            .thread_name("cairn-s3")
            .enable_all()
            .build()
            .map_err(|e| other(format!("cannot start the S3 client's threads: {e}")))?;
        let handle = runtime.handle().clone();

        let creds = load_credentials(&opts.credentials, &display)?;
        let http = aws_smithy_http_client::Builder::new()
            .pool_max_idle_per_host(connections)
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let region = match (&opts.region, &endpoint) {
            (Some(r), _) => Some(r.clone()),
            // Custom endpoints: no instance-metadata look-up for a region
            // that such servers mostly ignore.
            (None, Some(_)) => Some(
                std::env::var("AWS_REGION")
                    .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                    .unwrap_or_else(|_| "us-east-1".to_string()),
            ),
            (None, None) => None,
        };
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(REQUEST_TIMEOUT)
                    .build(),
            );
        if let Some(r) = region {
            loader = loader.region(Region::new(r));
        }
        if let Some(c) = creds {
            loader = loader.credentials_provider(c);
        }
        let sdk = block_on(&handle, loader.load());
        if sdk.region().is_none() {
            return Err(other(
                "no AWS region: set `region` in the repository's s3 settings, or AWS_REGION".to_string(),
            ));
        }
        let mut conf =
            aws_sdk_s3::config::Builder::from(&sdk).force_path_style(opts.path_style.unwrap_or(endpoint.is_some()));
        if let Some(ep) = &endpoint {
            conf = conf.endpoint_url(ep.trim_end_matches('/'));
        }
        let client = Client::from_conf(conf.build());

        let part_size = opts.multipart_part_size.max(MIN_PART_SIZE);
        Ok(Self {
            client,
            handle,
            _runtime: RuntimeOwner(Some(runtime)),
            bucket: parsed.bucket,
            prefix: parsed.prefix,
            location: display,
            data_class: opts.data_storage_class,
            permits: Arc::new(Semaphore::new(connections)),
            connections,
            multipart_threshold: opts.multipart_threshold.max(part_size),
            part_size,
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix (empty or ending in `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, kind: ObjectKind, name: &str) -> String {
        format!("{}{}", self.prefix, kind.path(name))
    }

    fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        block_on(&self.handle, f)
    }

    async fn permit(&self, path: &str) -> Result<tokio::sync::SemaphorePermit<'_>, BackendError> {
        self.permits.acquire().await.map_err(|_| BackendError::Other {
            path: path.to_string(),
            message: "the S3 client is shutting down".into(),
        })
    }

    fn fail<E>(&self, path: &str, e: SdkError<E>) -> BackendError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        classify(path, &self.bucket, e)
    }

    /// HeadObject: `Ok(None)` for a missing object, else size, storage
    /// class and the `x-amz-restore` header.
    async fn head(&self, key: &str) -> Result<Option<(u64, Option<String>, Option<String>)>, BackendError> {
        let _p = self.permit(key).await?;
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(h) => Ok(Some((
                h.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                h.storage_class().map(|c| c.as_str().to_string()),
                h.restore().map(str::to_string),
            ))),
            Err(e) => match self.fail(key, e) {
                BackendError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<(Vec<u8>, Option<String>), BackendError> {
        let _p = self.permit(key).await?;
        let mut req = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some((start, end_incl)) = range {
            req = req.range(format!("bytes={start}-{end_incl}"));
        }
        let resp = req.send().await.map_err(|e| self.fail(key, e))?;
        let content_range = resp.content_range().map(str::to_string);
        let expected = resp.content_length().and_then(|n| u64::try_from(n).ok());
        let body = resp
            .body
            .collect()
            .await
            .map_err(|e| BackendError::Transient {
                path: key.to_string(),
                message: format!("the connection broke while reading: {}", error_chain(&e)),
            })?
            .to_vec();
        if let Some(n) = expected {
            if n != body.len() as u64 {
                return Err(BackendError::Transient {
                    path: key.to_string(),
                    message: format!("the server announced {n} bytes but sent {}", body.len()),
                });
            }
        }
        Ok((body, content_range))
    }

    async fn put(&self, key: &str, class: Option<StorageClass>, bytes: Bytes) -> Result<(), BackendError> {
        let _p = self.permit(key).await?;
        let len = bytes.len() as i64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .set_storage_class(class)
            .content_length(len)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.fail(key, e))?;
        Ok(())
    }

    /// Multipart upload of `size` bytes taken from `source`; aborted on any
    /// failure, so no object (and no stray parts) are left behind.
    async fn put_multipart(
        &self,
        key: &str,
        class: Option<StorageClass>,
        size: u64,
        source: &(dyn Fn(u64, usize) -> Result<Bytes, BackendError> + Sync),
    ) -> Result<(), BackendError> {
        let created = {
            let _p = self.permit(key).await?;
            self.client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .set_storage_class(class)
                .send()
                .await
                .map_err(|e| self.fail(key, e))?
        };
        let upload_id = created
            .upload_id()
            .ok_or_else(|| BackendError::Other {
                path: key.to_string(),
                message: "the server started a multipart upload without an upload id".into(),
            })?
            .to_string();
        let result = self.upload_parts_and_complete(key, &upload_id, size, source).await;
        if let Err(e) = &result {
            tracing::debug!(key, error = %e, "multipart upload failed; aborting it");
            let _p = self.permit(key).await?;
            if let Err(abort) = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await
            {
                // The object is not visible either way; only the stored
                // parts linger until a lifecycle rule removes them.
                tracing::warn!(
                    key,
                    error = %error_chain(&abort),
                    "could not abort a failed multipart upload; its parts stay stored until the bucket's \
                     lifecycle rule for incomplete multipart uploads removes them"
                );
            }
        }
        result
    }

    async fn upload_parts_and_complete(
        &self,
        key: &str,
        upload_id: &str,
        size: u64,
        source: &(dyn Fn(u64, usize) -> Result<Bytes, BackendError> + Sync),
    ) -> Result<(), BackendError> {
        let part_size = self.part_size.max(size.div_ceil(MAX_PARTS));
        let count = size.div_ceil(part_size).max(1);
        // Parts in flight (and so in memory) for this upload.
        let inflight = Arc::new(Semaphore::new(self.connections));
        let mut tasks = tokio::task::JoinSet::new();
        let mut done: Vec<CompletedPart> = Vec::with_capacity(count as usize);
        let mut failure: Option<BackendError> = None;
        let join_err = |e: tokio::task::JoinError| BackendError::Other {
            path: key.to_string(),
            message: format!("a part upload stopped unexpectedly: {e}"),
        };
        for i in 0..count {
            let slot = match inflight.clone().acquire_owned().await {
                Ok(s) => s,
                Err(_) => {
                    failure = Some(join_err_closed(key));
                    break;
                }
            };
            while let Some(r) = tasks.try_join_next() {
                match r.map_err(join_err).and_then(|x| x) {
                    Ok(p) => done.push(p),
                    Err(e) => failure = failure.or(Some(e)),
                }
            }
            if failure.is_some() {
                break;
            }
            let offset = i * part_size;
            let len = part_size.min(size - offset) as usize;
            let bytes = match source(offset, len) {
                Ok(b) if b.len() == len => b,
                Ok(b) => {
                    failure = Some(BackendError::Other {
                        path: key.to_string(),
                        message: format!("the data source gave {} bytes for a part of {len}", b.len()),
                    });
                    break;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            let job = PartJob {
                number: (i + 1) as i32,
                bytes,
            };
            let client = self.client.clone();
            let permits = self.permits.clone();
            let (bucket, key, upload_id) = (self.bucket.clone(), key.to_string(), upload_id.to_string());
            tasks.spawn(async move {
                let _slot = slot;
                let _p = permits.acquire_owned().await.map_err(|_| join_err_closed(&key))?;
                let len = job.bytes.len() as i64;
                let out = client
                    .upload_part()
                    .bucket(&bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .part_number(job.number)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .content_length(len)
                    .body(ByteStream::from(job.bytes))
                    .send()
                    .await
                    .map_err(|e| classify(&key, &bucket, e))?;
                Ok::<_, BackendError>(
                    CompletedPart::builder()
                        .part_number(job.number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                        .build(),
                )
            });
        }
        if let Some(e) = failure {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            return Err(e);
        }
        while let Some(r) = tasks.join_next().await {
            match r.map_err(join_err).and_then(|x| x) {
                Ok(p) => done.push(p),
                Err(e) => {
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    return Err(e);
                }
            }
        }
        done.sort_by_key(|p| p.part_number());
        let _p = self.permit(key).await?;
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .if_none_match("*")
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
            .send()
            .await
            .map_err(|e| self.fail(key, e))?;
        Ok(())
    }

    async fn write_from(
        &self,
        kind: ObjectKind,
        name: &str,
        size: u64,
        source: &(dyn Fn(u64, usize) -> Result<Bytes, BackendError> + Sync),
    ) -> Result<(), BackendError> {
        let key = self.key(kind, name);
        // For servers that ignore If-None-Match (see the module docs).
        if self.head(&key).await?.is_some() {
            return Err(BackendError::AlreadyExists { path: key });
        }
        let class = if kind == ObjectKind::DataPack {
            self.data_class.sdk()
        } else {
            None
        };
        if size > self.multipart_threshold {
            self.put_multipart(&key, class, size, source).await
        } else {
            let len = usize::try_from(size).map_err(|_| BackendError::Other {
                path: key.clone(),
                message: "object too large for this machine".into(),
            })?;
            let bytes = source(0, len)?;
            if bytes.len() != len {
                return Err(BackendError::Other {
                    path: key,
                    message: format!("the data source gave {} bytes instead of {len}", bytes.len()),
                });
            }
            self.put(&key, class, bytes).await
        }
    }

    /// Writes an object of `size` bytes whose content `source(offset, len)`
    /// hands out piece by piece (a multipart upload above the threshold, so
    /// the whole object need not be in memory). Same contract as
    /// [`Backend::write`]: if `source` fails, the upload is aborted and no
    /// object appears.
    pub fn write_from_source(
        &self,
        kind: ObjectKind,
        name: &str,
        size: u64,
        source: &(dyn Fn(u64, usize) -> Result<Vec<u8>, BackendError> + Sync),
    ) -> Result<(), BackendError> {
        let wrapped = |offset: u64, len: usize| source(offset, len).map(Bytes::from);
        self.run(self.write_from(kind, name, size, &wrapped))
    }

    /// Keys with multipart uploads started and neither completed nor
    /// aborted, under this backend's prefix (normally none: failed uploads
    /// are aborted).
    pub fn pending_multipart_uploads(&self) -> Result<Vec<String>, BackendError> {
        self.run(async {
            let mut out = Vec::new();
            let mut key_marker: Option<String> = None;
            let mut id_marker: Option<String> = None;
            loop {
                let _p = self.permit(&self.prefix).await?;
                let resp = self
                    .client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .prefix(&self.prefix)
                    .set_key_marker(key_marker.take())
                    .set_upload_id_marker(id_marker.take())
                    .send()
                    .await
                    .map_err(|e| self.fail(&self.location, e))?;
                out.extend(resp.uploads().iter().filter_map(|u| u.key().map(str::to_string)));
                if resp.is_truncated() != Some(true) {
                    break;
                }
                key_marker = resp.next_key_marker().map(str::to_string);
                id_marker = resp.next_upload_id_marker().map(str::to_string);
                if key_marker.is_none() {
                    break;
                }
            }
            Ok(out)
        })
    }
}

fn join_err_closed(key: &str) -> BackendError {
    BackendError::Other {
        path: key.to_string(),
        message: "the S3 client is shutting down".into(),
    }
}

/// Runs `f` to completion on `handle`'s runtime from synchronous code. From
/// inside some other async runtime (where blocking that thread would panic)
/// it blocks a helper thread instead.
fn block_on<F>(handle: &tokio::runtime::Handle, f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            match s.spawn(|| handle.block_on(f)).join() {
                Ok(v) => v,
                // Re-raise a panic of the future on the calling thread.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    } else {
        handle.block_on(f)
    }
}

/// An error and its sources as one line (`a: b: c`), without the debug
/// dumps of the SDK's own formatting, and without repeating a message that a
/// source already gave.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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
fn classify<E>(path: &str, bucket: &str, e: SdkError<E>) -> BackendError
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

/// Parses the total size from a `Content-Range: bytes a-b/SIZE` header.
fn total_from_content_range(v: &str) -> Option<u64> {
    v.rsplit_once('/').and_then(|(_, t)| t.trim().parse().ok())
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn create(&self) -> Result<(), BackendError> {
        self.run(async {
            let _p = self.permit(&self.location).await?;
            match self.client.head_bucket().bucket(&self.bucket).send().await {
                Ok(_) => Ok(()),
                Err(e) => Err(match self.fail(&self.location, e) {
                    BackendError::NotFound { path } => BackendError::Denied {
                        path,
                        message: format!(
                            "the bucket {:?} does not exist; create it first (cairn does not create buckets) \
                             or correct the repository location",
                            self.bucket
                        ),
                    },
                    other => other,
                }),
            }
        })
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, BackendError> {
        if kind == ObjectKind::Config {
            return Ok(match self.stat(kind, "config")? {
                Some(size) => vec![ObjectInfo {
                    name: "config".into(),
                    size,
                }],
                None => vec![],
            });
        }
        let list_prefix = format!("{}{}/", self.prefix, kind.prefix());
        self.run(async {
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let resp = {
                    let _p = self.permit(&list_prefix).await?;
                    self.client
                        .list_objects_v2()
                        .bucket(&self.bucket)
                        .prefix(&list_prefix)
                        .set_continuation_token(token.take())
                        .send()
                        .await
                        .map_err(|e| self.fail(&list_prefix, e))?
                };
                for o in resp.contents() {
                    let Some(rest) = o.key().and_then(|k| k.strip_prefix(&list_prefix)) else {
                        continue;
                    };
                    let name = if kind == ObjectKind::DataPack {
                        // data/xx/NAME: bare names, whatever the fan-out.
                        rest.rsplit('/').next().unwrap_or(rest)
                    } else if rest.contains('/') {
                        continue;
                    } else {
                        rest
                    };
                    if name.is_empty() || name.starts_with('.') {
                        continue;
                    }
                    out.push(ObjectInfo {
                        name: name.to_string(),
                        size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    });
                }
                if resp.is_truncated() != Some(true) {
                    break;
                }
                token = resp.next_continuation_token().map(str::to_string);
                if token.is_none() {
                    return Err(BackendError::Other {
                        path: list_prefix.clone(),
                        message: "the server said the listing goes on but gave no continuation token".into(),
                    });
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, BackendError> {
        let key = self.key(kind, name);
        self.run(async { self.get(&key, None).await.map(|(body, _)| body) })
    }

    fn read_range(&self, kind: ObjectKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, BackendError> {
        let key = self.key(kind, name);
        self.run(async {
            let out_of_range = |size: u64| BackendError::OutOfRange {
                path: key.clone(),
                offset,
                len,
                size,
            };
            let size_now = || async {
                match self.head(&key).await? {
                    Some((size, _, _)) => Ok(size),
                    None => Err(BackendError::NotFound { path: key.clone() }),
                }
            };
            let end = match offset.checked_add(len) {
                Some(end) if len > 0 => end,
                // An empty range: valid when it starts inside (or at the end of) the object.
                _ => {
                    let size = size_now().await?;
                    return if len == 0 && offset <= size {
                        Ok(Vec::new())
                    } else {
                        Err(out_of_range(size))
                    };
                }
            };
            let (body, content_range) = match self.get(&key, Some((offset, end - 1))).await {
                Ok(r) => r,
                // 416: the range starts past the end.
                Err(BackendError::OutOfRange { .. }) => return Err(out_of_range(size_now().await?)),
                Err(e) => return Err(e),
            };
            match content_range {
                Some(cr) => {
                    if body.len() as u64 == len {
                        Ok(body)
                    } else {
                        let size = match total_from_content_range(&cr) {
                            Some(s) => s,
                            None => size_now().await?,
                        };
                        Err(out_of_range(size))
                    }
                }
                // A server that ignored the Range header sent everything.
                None => {
                    let size = body.len() as u64;
                    if end > size {
                        return Err(out_of_range(size));
                    }
                    Ok(body[offset as usize..end as usize].to_vec())
                }
            }
        })
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        // Each part is copied once, when its upload starts (so a large
        // object is not held twice in memory).
        let source = |offset: u64, len: usize| {
            let start = offset as usize;
            Ok(Bytes::copy_from_slice(&data[start..start + len]))
        };
        self.run(self.write_from(kind, name, data.len() as u64, &source))
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<(), BackendError> {
        let key = self.key(kind, name);
        self.run(async {
            // S3 deletes of missing keys succeed; the contract wants NotFound.
            if self.head(&key).await?.is_none() {
                return Err(BackendError::NotFound { path: key.clone() });
            }
            let _p = self.permit(&key).await?;
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| self.fail(&key, e))?;
            Ok(())
        })
    }

    fn stat(&self, kind: ObjectKind, name: &str) -> Result<Option<u64>, BackendError> {
        let key = self.key(kind, name);
        self.run(async { Ok(self.head(&key).await?.map(|(size, _, _)| size)) })
    }

    fn archive_state(&self, kind: ObjectKind, name: &str) -> Result<ArchiveState, BackendError> {
        let key = self.key(kind, name);
        let Some((_, class, restore)) = self.run(self.head(&key))? else {
            return Err(BackendError::NotFound { path: key });
        };
        Ok(archive_state_of(class.as_deref(), restore.as_deref()))
    }

    fn request_retrieval(
        &self,
        kind: ObjectKind,
        name: &str,
        tier: RetrievalTier,
        days: u32,
    ) -> Result<(), BackendError> {
        let key = self.key(kind, name);
        let days = i32::try_from(days.max(1)).map_err(|_| BackendError::Other {
            path: key.clone(),
            message: format!("{days} days is too long a retrieval"),
        })?;
        let tier = match tier {
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
            Err((code, _, e)) if code == "InvalidObjectState" => match self.archive_state(kind, name)? {
                ArchiveState::Readable => Ok(()),
                _ => Err(e),
            },
            Err((_, Some(405 | 501), _)) => Err(BackendError::Other {
                path: key,
                message: "this S3 server cannot retrieve objects from archive storage (RestoreObject is not supported)"
                    .into(),
            }),
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
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_locations() {
        let l = S3Location::parse("s3://my-bucket/some/prefix/").unwrap();
        assert_eq!(
            l,
            S3Location {
                endpoint: None,
                bucket: "my-bucket".into(),
                prefix: "some/prefix/".into()
            }
        );
        let l = S3Location::parse("s3:http://127.0.0.1:8333/b-1").unwrap();
        assert_eq!(l.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("b-1", ""));
        let l = S3Location::parse("s3:https://s3.example.com/bkt/x").unwrap();
        assert_eq!(l.endpoint.as_deref(), Some("https://s3.example.com"));
        assert_eq!(l.prefix, "x/");
        for bad in [
            "s3:",
            "s3://",
            "s3:ftp://h/b",
            "s3:https:///bkt",
            "s3:https://k:s@host/bkt",
            "s3://UPPER",
            "s3://bkt/a/../b",
            "/local",
        ] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
    }

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

    #[test]
    fn storage_classes_parse() {
        assert_eq!(
            "glacier-ir".parse::<DataStorageClass>().unwrap(),
            DataStorageClass::GlacierIr
        );
        assert_eq!(
            "DEEP_ARCHIVE".parse::<DataStorageClass>().unwrap(),
            DataStorageClass::DeepArchive
        );
        assert!("COLD".parse::<DataStorageClass>().is_err());
        assert_eq!(DataStorageClass::Standard.sdk(), None);
    }

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

    #[test]
    fn content_range_totals() {
        assert_eq!(total_from_content_range("bytes 0-9/100000"), Some(100_000));
        assert_eq!(total_from_content_range("bytes 0-9/*"), None);
    }
}
