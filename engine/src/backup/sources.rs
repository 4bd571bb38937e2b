//! How each kind of source reaches the saver: files through the one
//! walker (with the parent's unchanged files not read), a stream as one
//! file under made-up folders.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{content, current_user, dir, parent, saver, walk, BackupError, BackupOptions, SkippedEntry};
use crate::chunker::ChunkBuffer;
use crate::id::{SnapshotId, TreeId};
use crate::repository::Repository;
use crate::snapshot::Summary;
use crate::sources::{SourceError, Stream};
use crate::tree::{Node, NodeKind};

/// The root of a snapshot holding one stream, stored at `path`, that must
/// end well (a command that exits 0, a dump that checks itself as it is
/// read); with the command's exit code.
pub(super) fn stream_root(
    repo: &Repository,
    saver: &saver::Saver,
    chunker: &crate::chunker::ChunkerParams,
    mut stream: Stream,
    path: &std::path::Path,
    opts: &BackupOptions,
    summary: &mut Summary,
) -> Result<(TreeId, Option<i32>), BackupError> {
    let name = path.to_string_lossy();
    let node = match stream_file(repo, saver, chunker, &mut stream, &name, opts, summary) {
        Ok(n) => n,
        Err(e) => {
            stream.abort();
            return Err(e);
        }
    };
    let exit_code = stream.finish()?;
    let mut dir = dir::DirBuilder::synthetic_root();
    dir.insert_path(path, node);
    Ok((dir.store(saver, repo)?, exit_code))
}

/// What walking files needs of the backup in progress.
pub(super) struct Files<'a> {
    pub(super) repo: &'a Repository,
    pub(super) saver: &'a saver::Saver,
    pub(super) chunker: &'a crate::chunker::ChunkerParams,
    pub(super) index: &'a Arc<crate::index::Index>,
}

impl Files<'_> {
    /// Walks `paths` as files, not reading those the parent (if any) shows
    /// unchanged; returns the root tree.
    pub(super) fn walk(
        &self,
        parent_id: Option<&SnapshotId>,
        paths: &[PathBuf],
        opts: &BackupOptions,
        summary: &mut Summary,
        skipped: &mut Vec<SkippedEntry>,
    ) -> Result<TreeId, BackupError> {
        let parent = match parent_id {
            Some(id) => match parent::ParentFiles::load(self.repo, self.index, id) {
                Ok(p) => Some(p),
                // A parent whose trees are damaged, or only in packs a
                // prune recorded for deletion (B3): read every file.
                Err(BackupError::Repository(e)) if e.kind() == crate::error::ErrorKind::Damaged => {
                    tracing::warn!("not using the parent snapshot: {e}; every file is read");
                    None
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        walk::run(
            self.repo,
            self.saver,
            self.chunker,
            paths,
            parent.as_ref(),
            opts,
            summary,
            skipped,
        )
    }
}

/// Chunks a stream into data blobs and returns its file node.
fn stream_file(
    repo: &Repository,
    saver: &saver::Saver,
    chunker: &crate::chunker::ChunkerParams,
    stream: &mut Stream,
    filename: &str,
    opts: &BackupOptions,
    summary: &mut Summary,
) -> Result<Node, BackupError> {
    let name = filename.rsplit('/').next().unwrap_or(filename);
    if crate::tree::check_name(name.as_bytes()).is_err() {
        return Err(BackupError::Invalid(format!(
            "`{filename}` is not a usable file name for a stream"
        )));
    }
    let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::File);
    node.mode = 0o600;
    node.mtime_ns = crate::time::now_ns();
    node.ctime_ns = node.mtime_ns;
    let (user, uid, gid) = current_user();
    node.user = user;
    node.uid = uid;
    node.gid = gid;
    let mut chunk_buffer = ChunkBuffer::new(chunker);
    let content = content::save_content(repo, saver, &mut chunk_buffer, stream.reader(), |len| {
        if let Some(p) = &opts.progress {
            p.bytes_done.fetch_add(len, Ordering::Relaxed);
            p.bytes_total.fetch_add(len, Ordering::Relaxed);
        }
    })
    .map_err(|e| match e {
        content::ContentError::Read(source) => BackupError::Stream(SourceError::Read {
            what: filename.to_string(),
            source,
        }),
        content::ContentError::Save(e) => e,
    })?;
    let size = content.size;
    node.content = content.refs;
    node.size = size;
    summary.files_new = 1;
    summary.bytes_new = size;
    summary.bytes_read = size;
    Ok(node)
}
