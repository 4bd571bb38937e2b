//! Chunk → id → save: the one path from a byte source (a file or a stream)
//! to the content list of its node.

use std::io::Read;

use super::saver::Saver;
use super::BackupError;
use crate::blob::BlobType;
use crate::chunker::ChunkBuffer;
use crate::repository::Repository;
use crate::tree::ContentRef;

/// Why content could not be stored.
pub(crate) enum ContentError {
    /// Reading the source failed (the caller names the source).
    Read(std::io::Error),
    /// The pipeline behind the saver failed.
    Save(BackupError),
}

/// The content of one file.
pub(crate) struct Content {
    /// Its blobs, in order.
    pub refs: Vec<ContentRef>,
    /// Its length in bytes.
    pub size: u64,
}

/// Splits `reader` into chunks, names each by its keyed hash and hands it to
/// the saver (which stores it unless the repository has it already).
/// `on_chunk` is told each chunk's length, for progress and counters.
pub(crate) fn save_content(
    repo: &Repository,
    saver: &Saver,
    chunk_buffer: &mut ChunkBuffer,
    reader: impl Read,
    mut on_chunk: impl FnMut(u64),
) -> Result<Content, ContentError> {
    let mut content = Content {
        refs: Vec::new(),
        size: 0,
    };
    for chunk in chunk_buffer.chunks(reader) {
        let data = chunk.map_err(ContentError::Read)?;
        // Chunks are at most max_size (4 MiB by default, far below 4 GiB).
        let len = data.len() as u32;
        let id = repo.keys().blob_id(&data);
        saver.save(BlobType::Data, id, data).map_err(ContentError::Save)?;
        content.refs.push(ContentRef { id, length: len });
        content.size += u64::from(len);
        on_chunk(u64::from(len));
        if saver.failed() {
            return Err(ContentError::Save(BackupError::PipelineStopped));
        }
    }
    // Held until the file's folder is written: most files are one chunk,
    // and a Vec grown by push keeps room for four.
    content.refs.shrink_to_fit();
    Ok(content)
}
