//! What an `s3:` location names and the settings of the S3 client: the
//! numbers S3 itself limits are checked here, once, for every caller.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use aws_sdk_s3::types::StorageClass;

use super::{ObjectLock, S3Credentials};
use crate::backend::BackendError;

pub(super) const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

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
    pub(super) fn sdk(self) -> Option<StorageClass> {
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
    /// Requests in flight at once (default 8; [`S3Options::CONNECTIONS`]).
    pub connections: usize,
    /// Storage class of data packs (everything else is always `STANDARD`).
    pub data_storage_class: DataStorageClass,
    /// Objects larger than this go up as multipart uploads (default 64 MiB;
    /// at least the part size, at most [`S3Options::MAX_MULTIPART_THRESHOLD`]).
    pub multipart_threshold: u64,
    /// Part size of multipart uploads (default 16 MiB;
    /// [`S3Options::PART_SIZE`]). Objects too large for 10,000 parts of this
    /// size go up in larger parts.
    pub multipart_part_size: u64,
    /// Where the credentials come from.
    pub credentials: S3Credentials,
    /// S3 Object Lock retention on every object written (the bucket must
    /// have Object Lock enabled); `None`: no retention, plain deletes.
    pub object_lock: Option<ObjectLock>,
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
            object_lock: None,
        }
    }
}

impl S3Options {
    /// Requests in flight at once that [`S3Options::validate`] accepts.
    pub const CONNECTIONS: RangeInclusive<usize> = 1..=256;
    /// Multipart part sizes that S3 accepts (5 MiB to 5 GiB; only the last
    /// part of an upload may be smaller).
    pub const PART_SIZE: RangeInclusive<u64> = 5 * MIB..=5 * GIB;
    /// The largest object S3 accepts in one `PutObject`, so the largest
    /// threshold below which objects go up whole.
    pub const MAX_MULTIPART_THRESHOLD: u64 = 5 * GIB;

    /// Checks the numbers against the limits above. `super::S3Backend::open`
    /// calls this and refuses options that fail it, rather than quietly
    /// using other numbers than the ones asked for.
    pub fn validate(&self) -> Result<(), S3OptionsError> {
        if !Self::CONNECTIONS.contains(&self.connections) {
            return Err(S3OptionsError::Connections { got: self.connections });
        }
        if !Self::PART_SIZE.contains(&self.multipart_part_size) {
            return Err(S3OptionsError::PartSize {
                got: self.multipart_part_size,
            });
        }
        if self.multipart_threshold < self.multipart_part_size
            || self.multipart_threshold > Self::MAX_MULTIPART_THRESHOLD
        {
            return Err(S3OptionsError::Threshold {
                got: self.multipart_threshold,
                part_size: self.multipart_part_size,
            });
        }
        Ok(())
    }
}

/// Why [`S3Options::validate`] refused the options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3OptionsError {
    /// Connections outside [`S3Options::CONNECTIONS`].
    #[error("s3 connections must be {} to {}, not {got}", S3Options::CONNECTIONS.start(), S3Options::CONNECTIONS.end())]
    Connections {
        /// The number given.
        got: usize,
    },
    /// A part size outside [`S3Options::PART_SIZE`].
    #[error(
        "the s3 multipart part size must be {} to {}, not {}",
        Size(*S3Options::PART_SIZE.start()),
        Size(*S3Options::PART_SIZE.end()),
        Size(*got)
    )]
    PartSize {
        /// The size given, in bytes.
        got: u64,
    },
    /// A threshold below the part size or above
    /// [`S3Options::MAX_MULTIPART_THRESHOLD`].
    #[error(
        "the s3 multipart threshold must be at least the part size ({}) and at most {}, not {}",
        Size(*part_size),
        Size(S3Options::MAX_MULTIPART_THRESHOLD),
        Size(*got)
    )]
    Threshold {
        /// The threshold given, in bytes.
        got: u64,
        /// The part size it was checked against, in bytes.
        part_size: u64,
    },
}

/// A byte count as the settings give it: in MiB when it is a whole number
/// of them.
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // (`u64::is_multiple_of` is newer than the workspace's rust-version.)
        match self.0 % MIB {
            0 => write!(f, "{} MiB", self.0 / MIB),
            _ => write!(f, "{} bytes", self.0),
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
            .field("object_lock", &self.object_lock)
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
    fn defaults_pass_and_out_of_range_numbers_are_refused() {
        let ok = S3Options::default();
        assert_eq!(ok.validate(), Ok(()));
        let with = |f: fn(&mut S3Options)| {
            let mut o = S3Options::default();
            f(&mut o);
            o.validate()
        };
        assert_eq!(with(|o| o.connections = 0), Err(S3OptionsError::Connections { got: 0 }));
        assert!(with(|o| o.connections = 257).is_err());
        assert_eq!(with(|o| o.connections = 256), Ok(()));
        let e = with(|o| o.multipart_part_size = 4 * MIB).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the s3 multipart part size must be 5 MiB to 5120 MiB, not 4 MiB"
        );
        assert!(with(|o| o.multipart_part_size = 5 * GIB + 1).is_err());
        assert_eq!(
            with(|o| {
                o.multipart_part_size = 5 * MIB;
                o.multipart_threshold = 5 * MIB;
            }),
            Ok(())
        );
        // The threshold is not raised to the part size behind the caller's back.
        let e = with(|o| o.multipart_threshold = 8 * MIB).unwrap_err();
        assert!(matches!(e, S3OptionsError::Threshold { got, part_size } if got == 8 * MIB && part_size == 16 * MIB));
        assert!(e.to_string().contains("at least the part size (16 MiB)"), "{e}");
        assert!(with(|o| o.multipart_threshold = 5 * GIB + 1).is_err());
    }
}
