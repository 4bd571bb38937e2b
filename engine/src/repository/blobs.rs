//! Blobs and trees read through the index, and pack headers.

use super::{pack_kind, Repository, RepositoryError};
use crate::backend::{BackendError, ObjectKind};
use crate::blob::{self, Aad, BlobType};
use crate::id::{BlobId, PackId, TreeId};
use crate::index::Index;
use crate::pack;
use crate::pack::PackError;
use crate::tree::Tree;

impl Repository {
    /// Opens a sealed blob read from its pack.
    pub fn open_blob(
        &self,
        blob_type: BlobType,
        id: &BlobId,
        pack: &PackId,
        sealed: &[u8],
    ) -> Result<Vec<u8>, RepositoryError> {
        let kind = pack_kind(blob_type);
        blob::open(&self.keys, Aad::Blob(blob_type, id), sealed).map_err(|e| RepositoryError::Corrupt {
            kind,
            name: pack.to_hex(),
            detail: format!("blob {}: {e}", id.short()),
        })
    }

    /// Opens a sealed blob inside a buffer the caller owns (see
    /// [`blob::open_in_place`]).
    pub(crate) fn open_blob_in_place<'a>(
        &self,
        blob_type: BlobType,
        id: &BlobId,
        pack: &PackId,
        sealed: &'a mut [u8],
    ) -> Result<blob::Plain<'a>, RepositoryError> {
        let kind = pack_kind(blob_type);
        blob::open_in_place(&self.keys, Aad::Blob(blob_type, id), sealed).map_err(|e| RepositoryError::Corrupt {
            kind,
            name: pack.to_hex(),
            detail: format!("blob {}: {e}", id.short()),
        })
    }

    /// Reads one blob through the index.
    pub fn read_blob(&self, index: &Index, id: &BlobId) -> Result<Vec<u8>, RepositoryError> {
        let loc = index.get(id).ok_or(RepositoryError::MissingBlob { id: *id })?;
        let sealed = self.backend.read_range(
            pack_kind(loc.blob_type),
            &loc.pack.to_hex(),
            u64::from(loc.offset),
            u64::from(loc.length),
        )?;
        self.open_blob(loc.blob_type, id, &loc.pack, &sealed)
    }

    /// Reads and decodes a tree.
    pub fn load_tree(&self, index: &Index, id: &TreeId) -> Result<Tree, RepositoryError> {
        let plain = self.read_blob(index, &id.blob())?;
        Tree::decode(&plain).map_err(|e| RepositoryError::Corrupt {
            kind: ObjectKind::TreePack,
            name: index.get(&id.blob()).map(|l| l.pack.to_hex()).unwrap_or_default(),
            detail: format!("invalid tree {}: {e}", id.short()),
        })
    }

    /// Reads a whole pack and lists its blobs from the header.
    pub fn read_pack_header(&self, kind: ObjectKind, name: &str) -> Result<Vec<pack::PackEntry>, RepositoryError> {
        let size = self
            .backend
            .stat(kind, name)?
            .ok_or_else(|| BackendError::NotFound { path: kind.path(name) })?;
        if size < 4 {
            return Err(RepositoryError::Corrupt {
                kind,
                name: name.into(),
                detail: "shorter than its trailer".into(),
            });
        }
        let trailer = self.backend.read_range(kind, name, size - 4, 4)?;
        let pe = |e: PackError| RepositoryError::Corrupt {
            kind,
            name: name.into(),
            detail: e.to_string(),
        };
        let (off, len) = pack::header_location(name, size, &trailer).map_err(pe)?;
        let sealed = self.backend.read_range(kind, name, off, len)?;
        pack::parse_header(&self.keys, name, &sealed, off).map_err(pe)
    }
}
