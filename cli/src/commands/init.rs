use anyhow::{Context, Result};
use cairn_engine::{Config, InitOptions, KdfParams, Repository};

use super::Ctx;
use crate::args::InitArgs;
use crate::password;

pub fn run(ctx: &Ctx, a: InitArgs) -> Result<u8> {
    let t = ctx.target()?;
    let mut opts = InitOptions::default();
    if let Some(from) = &a.chunker_params_from {
        let other = ctx.config.target(Some(from))?;
        let backend = ctx.backend(&other)?;
        let pw = password::other_repository()?;
        let repo = Repository::open(backend, &pw)
            .with_context(|| format!("opening {} to copy its chunker parameters", other.location))?;
        // The blob-id key too, so copies between the two keep every id.
        opts.dedup_like(&repo);
    }
    if let Some(l) = a.compression {
        opts.compression_level = l;
    }
    if let Some(mib) = a.pack_size {
        opts.pack_size = mib.checked_mul(1024 * 1024).context("pack size too large")?;
    }
    let d = KdfParams::default();
    opts.kdf = KdfParams {
        memory_kib: a.kdf_memory_kib.unwrap_or(d.memory_kib),
        iterations: a.kdf_iterations.unwrap_or(d.iterations),
        parallelism: d.parallelism,
    };
    let backend = ctx.backend(&t)?;
    let pw = password::for_init(t.password_file.as_deref(), t.password_command.as_deref())?;
    let repo =
        Repository::init(backend, &pw, opts).with_context(|| format!("creating repository at {}", t.location))?;
    let c: &Config = repo.config();
    if ctx.json {
        crate::output::json(&serde_json::json!({
            "repository_id": c.id_hex(),
            "location": t.location,
            "key": repo.key_name(),
            "format_version": c.format_version,
            "compression_level": c.compression_level,
            "pack_size": c.pack_size,
            "chunker": { "min_size": c.chunker.min_size, "avg_size": c.chunker.avg_size, "max_size": c.chunker.max_size },
        }))?;
    } else {
        ctx.say(format!(
            "created cairn repository {} at {}",
            &c.id_hex()[..8],
            t.location
        ));
        ctx.say("Keep the password safe: without it (or a recovery sheet) the data cannot be read.");
        ctx.say("Print a recovery sheet for the safe with: cairn key export-recovery");
    }
    Ok(0)
}
