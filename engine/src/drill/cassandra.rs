//! A drill's check of restored Cassandra snapshot folders: every SSTable
//! has its component set, and `sstablemetadata` (when installed) reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::Verification;

/// Components without which an SSTable cannot be loaded, whatever its
/// format: the data, its statistics and its table of contents (the
/// partition index is `Index.db` in the `big` format, `Partitions.db` in
/// `bti`).
const REQUIRED: [&str; 3] = ["Data.db", "Statistics.db", "TOC.txt"];

/// Checks the restored Cassandra snapshot folders under `dir`.
pub fn verify_cassandra(dir: &Path) -> Verification {
    let mut problems = Vec::new();
    let mut sstables = 0;
    let mut data_files = Vec::new();
    for (folder, names) in folders(dir) {
        let mut by_prefix: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for n in &names {
            if let Some(cut) = n.rfind('-').filter(|&c| n[..c].contains('-')) {
                by_prefix
                    .entry(n[..=cut].to_string())
                    .or_default()
                    .insert(n[cut + 1..].to_string());
            }
        }
        for (prefix, have) in by_prefix {
            sstables += 1;
            let mut want: BTreeSet<String> = REQUIRED.iter().map(|c| c.to_string()).collect();
            if !have.contains("Partitions.db") {
                want.insert("Index.db".into());
            }
            // TOC.txt lists the components the SSTable was written with.
            if let Ok(toc) = std::fs::read_to_string(folder.join(format!("{prefix}TOC.txt"))) {
                want.extend(
                    toc.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_graphic()))
                        .map(str::to_string),
                );
            }
            for c in want.difference(&have) {
                problems.push(format!("{}: {prefix}{c} is missing", folder.display()));
            }
            if have.contains("Data.db") {
                data_files.push(folder.join(format!("{prefix}Data.db")));
            }
        }
    }
    if sstables == 0 {
        problems.push("no SSTable in the restored data".into());
    }
    let mut output = format!("{sstables} SSTable(s) with their components");
    if problems.is_empty() {
        match metadata(&data_files) {
            Some(Ok(n)) => output.push_str(&format!("; sstablemetadata read {n}")),
            Some(Err(e)) => problems.push(e),
            None => output.push_str("; sstablemetadata is not installed, so the SSTables were not parsed"),
        }
    }
    Verification {
        kind: "sstables".into(),
        ok: problems.is_empty(),
        output: if problems.is_empty() {
            output
        } else {
            problems.join("\n")
        },
    }
}

/// Each folder under `dir` with the names of the files in it.
fn folders(dir: &Path) -> BTreeMap<PathBuf, Vec<String>> {
    let mut out: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for f in super::files_under(dir) {
        if let (Some(folder), Some(name)) = (f.parent(), f.file_name()) {
            out.entry(folder.to_path_buf())
                .or_default()
                .push(name.to_string_lossy().into_owned());
        }
    }
    out
}

/// `sstablemetadata` on every Data.db: `None` when it is not installed.
fn metadata(files: &[PathBuf]) -> Option<Result<usize, String>> {
    let probe = Command::new("sstablemetadata")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    probe.ok()?;
    for f in files {
        match Command::new("sstablemetadata").arg(f).stdout(Stdio::null()).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Some(Err(format!(
                    "sstablemetadata {}: {}",
                    f.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                )))
            }
            Err(e) => return Some(Err(format!("sstablemetadata {}: {e}", f.display()))),
        }
    }
    Some(Ok(files.len()))
}
