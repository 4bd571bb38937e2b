//! Building the S3 client: its own tokio runtime, the HTTP client, region,
//! credentials and timeouts, and running its futures from synchronous code.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::Client;
use tokio::sync::Semaphore;

use super::credentials::load_credentials;
use super::{S3Backend, S3Location, S3Options};
use crate::backend::BackendError;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take until the response headers arrive
/// (including sending its body: at most one part or one object below the
/// multipart threshold). Stalled transfers are caught sooner by the SDK's
/// stalled-stream protection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Shuts the runtime down without waiting when the backend goes away, so
/// dropping the backend is safe anywhere (even inside another runtime).
pub(super) struct RuntimeOwner(Option<tokio::runtime::Runtime>);

impl Drop for RuntimeOwner {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl S3Backend {
    /// Opens `location` (see the module documentation) with `opts`. Loads
    /// the credentials now (a credentials file or command runs once); does
    /// not contact the server. Options outside the limits of
    /// [`S3Options::validate`] are refused, naming the limit.
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
        let display = match &endpoint {
            Some(ep) => format!("s3:{}/{}/{}", ep.trim_end_matches('/'), parsed.bucket, parsed.prefix),
            None => format!("s3://{}/{}", parsed.bucket, parsed.prefix),
        };
        let display = display.trim_end_matches('/').to_string();
        let other = |message: String| BackendError::Other {
            path: display.clone(),
            message,
        };
        opts.validate().map_err(|e| other(e.to_string()))?;
        let connections = opts.connections;
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
            multipart_threshold: opts.multipart_threshold,
            part_size: opts.multipart_part_size,
            object_lock: opts.object_lock,
        })
    }
}

/// Runs `f` to completion on `handle`'s runtime from synchronous code. From
/// inside some other async runtime (where blocking that thread would panic)
/// it blocks a helper thread instead.
pub(super) fn block_on<F>(handle: &tokio::runtime::Handle, f: F) -> F::Output
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
