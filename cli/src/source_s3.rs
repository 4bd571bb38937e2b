//! `backup --s3-source` and `restore --to-s3`: their flags, where the
//! bucket's credentials come from, and printing a restore into a bucket.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};
use cairn_engine::{
    restore_to_s3, Repository, S3Credentials, S3Options, S3RestoreOptions, S3RestoreProgress, S3RestoreSummary,
    S3Source, Snapshot, SnapshotId,
};
use clap::Args;

use crate::commands::Ctx;
use crate::output::{self, bytes};
use crate::progress::Bar;

/// The environment variable naming the source bucket's credentials file.
pub const CREDENTIALS_ENV: &str = "CAIRN_S3_SOURCE_CREDENTIALS_FILE";

/// `backup` flags of the S3 bucket source.
#[derive(Debug, Args, Clone, Default)]
pub struct S3SourceArgs {
    /// Back up the objects of a bucket (or of a prefix in it) as files under
    /// /BUCKET/: s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX] (MinIO, SeaweedFS,
    /// ...) or s3://BUCKET[/PREFIX] (AWS). Objects with the same key, size and
    /// ETag as in the previous snapshot of this bucket are not read again.
    /// Credentials: CAIRN_S3_SOURCE_CREDENTIALS_FILE, else cairn.toml's
    /// [s3-source] table, else the repository's S3 credentials, else the AWS
    /// environment.
    #[arg(long, value_name = "LOCATION", conflicts_with_all = ["paths", "stdin", "stdin_from_command"])]
    pub s3_source: Option<String>,
    /// With --s3-source: include non-current versions, each as
    /// KEY.versions/VERSION-ID (delete markers are counted, not stored).
    #[arg(long, requires = "s3_source")]
    pub versions: bool,
}

/// `restore` flag for putting files back into a bucket.
#[derive(Debug, Args, Clone, Default)]
pub struct S3RestoreArgs {
    /// Put the files back as objects into this bucket (and prefix) instead of
    /// writing them to --target: s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX].
    /// /BUCKET/KEY becomes PREFIX/KEY, with its content type and user
    /// metadata. Only snapshots of --s3-source backups. Credentials as for
    /// `backup --s3-source`.
    #[arg(long, value_name = "LOCATION", conflicts_with_all = ["target", "verify", "overwrite", "include", "exclude", "preserve_special", "no_xattrs"])]
    pub to_s3: Option<String>,
}

/// The S3 settings of the source bucket: cairn.toml's `[s3-source]` table
/// (same keys as a repository's s3 table); credentials from
/// `CAIRN_S3_SOURCE_CREDENTIALS_FILE`, that table, or the repository's s3
/// table, in that order; otherwise the AWS chain.
pub fn options(ctx: &Ctx) -> Result<S3Options> {
    let mut o = match &ctx.config.s3_source {
        Some(p) => p
            .options()
            .context("the [s3-source] settings in cairn.toml are invalid")?,
        None => S3Options::default(),
    };
    let own = ctx
        .config
        .s3_source
        .as_ref()
        .is_some_and(|p| p.credentials_file.is_some() || p.credentials_command.is_some());
    if let Some(f) = std::env::var_os(CREDENTIALS_ENV).filter(|f| !f.is_empty()) {
        o.credentials = S3Credentials::File(PathBuf::from(f));
    } else if !own {
        // The repository's credentials, when it is in S3 and names them.
        if let Ok(t) = ctx.target() {
            if let Some(p) = t.s3.as_ref().and_then(|s| s.options().ok()) {
                o.credentials = p.credentials;
            }
        }
    }
    Ok(o)
}

/// Opens the `--s3-source` (or `--to-s3`) location.
pub fn open(ctx: &Ctx, location: &str, versions: bool) -> Result<S3Source> {
    Ok(S3Source::open(location, &options(ctx)?, versions)?)
}

/// `restore SNAPSHOT[:PATH] --to-s3 LOCATION`.
pub fn restore(
    ctx: &Ctx,
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    subpath: Option<String>,
    location: &str,
) -> Result<u8> {
    let target = open(ctx, location, false)?;
    let progress = Arc::new(S3RestoreProgress::default());
    let opts = S3RestoreOptions {
        subpath,
        progress: Some(progress.clone()),
    };
    let bar = ctx.progress().then(|| {
        let p = progress.clone();
        Bar::bytes("restore to S3", move || {
            (
                p.bytes_done.load(Ordering::Relaxed),
                p.bytes_total.load(Ordering::Relaxed),
                format!(
                    "{}/{} objects",
                    p.objects_done.load(Ordering::Relaxed),
                    p.objects_total.load(Ordering::Relaxed)
                ),
            )
        })
    });
    let started = std::time::Instant::now();
    let r = restore_to_s3(repo, snap, &target, &opts);
    drop(bar);
    let s = r?;
    report(ctx, id, &s, started)?;
    Ok(if s.failed.is_empty() { 0 } else { crate::EXIT_FAILURE })
}

fn report(ctx: &Ctx, id: &SnapshotId, s: &S3RestoreSummary, started: std::time::Instant) -> Result<()> {
    if ctx.json {
        return output::json(&serde_json::json!({
            "snapshot": id.to_hex(),
            "target": s.target,
            "summary": s,
            "seconds": started.elapsed().as_secs_f64(),
        }));
    }
    for f in &s.failed {
        eprintln!("not restored: {} (key {}): {}", f.path, f.key, f.reason);
    }
    ctx.say(format!(
        "restored snapshot {} to {}: {} objects, {} in {:.2} s",
        id.short(),
        s.target,
        s.objects,
        bytes(s.bytes),
        started.elapsed().as_secs_f64()
    ));
    if s.versions_left_out > 0 {
        ctx.say(format!(
            "{} non-current version(s) left out: restore one with SNAPSHOT:/BUCKET/KEY{}/VERSION-ID",
            s.versions_left_out,
            cairn_engine::VERSIONS_SUFFIX
        ));
    }
    if !s.failed.is_empty() {
        ctx.say(format!(
            "{} object(s) could not be put back (listed above); everything else was",
            s.failed.len()
        ));
    }
    Ok(())
}
