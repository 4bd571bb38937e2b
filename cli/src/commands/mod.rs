//! One module per command; each turns arguments into engine calls and
//! prints the result.

mod backup;
mod browse;
mod cat;
mod check;
mod config_check;
mod copy;
mod drill;
mod forget;
mod import;
mod init;
mod key;
mod mount;
mod prune;
mod repair;
mod restore;
mod rewrite;
mod run;
mod stats;
mod status;
mod tag;
mod unlock;

use anyhow::{Context, Result};
use cairn_engine::{BackendOptions, CacheOptions, Repository, SnapshotFilter};
use clap::CommandFactory;

use crate::args::{Cli, Command, ConfigCommand, FilterArgs};
use crate::config::{self, FileConfig};
use crate::password;

/// What every command needs besides its own arguments.
pub struct Ctx {
    pub no_cache: bool,
    pub cache_dir: Option<std::path::PathBuf>,
    pub limit_upload: Option<u64>,
    pub limit_download: Option<u64>,
    /// The options the repository was opened with (their retry counter is
    /// read for `--json` output).
    pub backend_options: std::cell::RefCell<Option<BackendOptions>>,
    pub json: bool,
    pub quiet: bool,
    pub config: FileConfig,
    pub repo: Option<String>,
}

impl Ctx {
    pub fn target(&self) -> Result<config::Target> {
        self.config.target(self.repo.as_deref())
    }

    /// Opens the repository, asking for the password by the documented order.
    pub fn open(&self) -> Result<Repository> {
        self.open_with(!self.no_cache)
    }

    /// [`open`](Self::open) without the metadata cache, for `check
    /// --read-data`: it must verify what the storage holds, and a cached
    /// copy of a tree pack or an index would hide damage to the stored one.
    pub fn open_uncached(&self) -> Result<Repository> {
        self.open_with(false)
    }

    fn open_with(&self, cache: bool) -> Result<Repository> {
        let t = self.target()?;
        let backend = self.backend_with(&t, cache)?;
        let pw = password::repository(t.password_file.as_deref(), t.password_command.as_deref())?;
        Repository::open(backend, &pw).with_context(|| format!("opening repository {}", t.location))
    }

    /// Opens the storage of `t` with its profile's settings and the global
    /// flags (speed limits).
    pub fn backend(&self, t: &config::Target) -> Result<std::sync::Arc<dyn cairn_engine::Backend>> {
        self.backend_with(t, !self.no_cache)
    }

    fn backend_with(&self, t: &config::Target, cache: bool) -> Result<std::sync::Arc<dyn cairn_engine::Backend>> {
        let mut o = t.backend_options()?;
        o.limit_upload_kib = self.limit_upload;
        o.limit_download_kib = self.limit_download;
        if cache {
            o.cache = CacheOptions::for_location(&t.location, self.cache_dir.as_deref());
        }
        let b = cairn_engine::open_location_with(&t.location, &o)?;
        *self.backend_options.borrow_mut() = Some(o);
        Ok(b)
    }

    /// Retries of temporary storage failures so far (S3).
    pub fn retries(&self) -> u64 {
        self.backend_options.borrow().as_ref().map(|o| o.retries()).unwrap_or(0)
    }

    /// The repository a configured source's snapshots are in: its own
    /// `repository`, else -r/CAIRN_REPOSITORY, else the file's default.
    pub fn source_repository(&self, src: &crate::policy::SourceConfig) -> String {
        src.repository
            .clone()
            .or_else(|| self.repo.clone())
            .or_else(|| self.config.repository.clone())
            .unwrap_or_default()
    }

    pub fn progress(&self) -> bool {
        crate::progress::enabled(self.quiet, self.json)
    }

    /// Prints a human line unless --quiet or --json.
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.quiet && !self.json {
            // A closed pipe here is not worth failing the command for.
            let _ = crate::output::outln(line.as_ref());
        }
    }
}

pub fn filter(f: &FilterArgs) -> SnapshotFilter {
    SnapshotFilter {
        hosts: f.hosts.clone(),
        tags: f.tags.clone(),
        paths: f.paths.clone(),
        as_of_ns: None,
    }
}

/// The globs of `--exclude-file` FILEs, one per line (`#` starts a comment).
pub fn read_exclude_files(files: &[std::path::PathBuf]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading exclude file {}", f.display()))?;
        out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    Ok(out)
}

pub fn run(cli: Cli) -> Result<u8> {
    // Checking a configuration file must not stop at loading it.
    let config = match &cli.command {
        Command::Config(_) => FileConfig::default(),
        _ => config::load(cli.config.as_deref())?,
    };
    let config_path = cli.config.clone();
    let ctx = context(&cli, config);
    match cli.command {
        Command::Init(a) => init::run(&ctx, a),
        Command::Backup(a) => backup::run(&ctx, a),
        Command::Snapshots(a) => browse::snapshots(&ctx, a),
        Command::Ls(a) => browse::ls(&ctx, a),
        Command::Diff(a) => browse::diff(&ctx, a),
        Command::Find(a) => browse::find(&ctx, a),
        Command::Restore(a) => restore::run(&ctx, a),
        Command::Dump(a) => restore::dump(&ctx, a),
        Command::Forget(a) => forget::run(&ctx, a),
        Command::Prune(a) => prune::run(&ctx, a),
        Command::Rewrite(a) => rewrite::run(&ctx, a),
        Command::Tag(a) => tag::run(&ctx, a),
        Command::Copy(a) => copy::run(&ctx, a),
        Command::Check(a) => check::run(&ctx, a),
        Command::Mount(a) => mount::run(&ctx, a),
        Command::Import(a) => import::run(&ctx, a),
        Command::Stats(a) => stats::run(&ctx, a),
        Command::Status(a) => status::run(&ctx, a),
        Command::Run(a) => run::run(&ctx, config_path.as_deref(), a),
        Command::Drill(a) => drill::run(&ctx, config_path.as_deref(), a),
        Command::Config(ConfigCommand::Check(a)) => config_check::run(&ctx, config_path.as_deref(), &a),
        Command::Repair(a) => repair::run(&ctx, a),
        Command::Unlock(a) => unlock::run(&ctx, a),
        Command::Cat(a) => cat::run(&ctx, a),
        Command::Key(a) => key::run(&ctx, a),
        Command::Completions(a) => {
            let mut buf = Vec::new();
            clap_complete::generate(a.shell, &mut Cli::command(), "cairn", &mut buf);
            crate::output::out(&String::from_utf8_lossy(&buf))?;
            Ok(0)
        }
        Command::Man => {
            let mut out = crate::output::Stdout;
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
            std::io::Write::flush(&mut out)?;
            Ok(0)
        }
    }
}

/// The context commands run in, from the command line and `config`.
pub fn context(cli: &Cli, config: config::FileConfig) -> Ctx {
    Ctx {
        no_cache: cli.no_cache,
        cache_dir: cli.cache_dir.clone(),
        limit_upload: cli.limit_upload,
        limit_download: cli.limit_download,
        backend_options: std::cell::RefCell::new(None),
        json: cli.json,
        quiet: cli.quiet,
        config,
        repo: cli.repo.clone(),
    }
}
