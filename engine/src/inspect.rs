//! Stored objects decoded for people (`cairn cat`): for debugging and
//! forensics, never needed by backup or restore. Every object is looked up
//! by the same id-prefix resolver the other commands use.

use serde::Serialize;

use crate::backend::ObjectKind;
use crate::blob::BlobType;
use crate::crypto::KdfParams;
use crate::error::Result;
use crate::id::{BlobId, PackId, SnapshotId, TreeId};
use crate::index::IndexFile;
use crate::repository::{Config, Repository, RepositoryError};
use crate::snapshot::Snapshot;
use crate::tree::Tree;

/// Which object to decode.
#[derive(Debug, Clone, Copy)]
pub enum CatRequest<'a> {
    /// The repository config.
    Config,
    /// A key object, by id prefix.
    Key(&'a str),
    /// A snapshot, by id prefix or `latest`.
    Snapshot(&'a str),
    /// An index object, by id prefix.
    Index(&'a str),
    /// A pack's header (data or tree pack), by id prefix.
    Pack(&'a str),
    /// A tree blob, by its full id.
    Tree(&'a str),
    /// A blob's plaintext, by its full id.
    Blob(&'a str),
}

/// A key object as shown (its wrapped master key left out).
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// Its name.
    pub id: String,
    /// When it was added (RFC 3339).
    pub created: String,
    /// Host that added it.
    pub host: String,
    /// User that added it.
    pub user: String,
    /// Its Argon2id cost.
    pub kdf: KdfParams,
    /// Its salt, hexadecimal.
    pub salt: String,
}

/// One blob of a pack header.
#[derive(Debug, Clone, Serialize)]
pub struct PackBlob {
    /// `data` or `tree`.
    #[serde(rename = "type")]
    pub blob_type: &'static str,
    /// Blob id.
    pub id: BlobId,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Sealed length.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
}

/// A pack header as shown.
#[derive(Debug, Clone, Serialize)]
pub struct PackInfo {
    /// The pack.
    pub id: PackId,
    /// `data pack` or `tree pack`.
    pub kind: String,
    /// Its blobs, in pack order.
    pub blobs: Vec<PackBlob>,
}

/// A snapshot with its id.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    /// Its id.
    pub id: SnapshotId,
    /// The snapshot.
    pub snapshot: Snapshot,
}

/// A decoded object.
#[derive(Debug, Clone)]
pub enum CatObject {
    /// The config.
    Config(Config),
    /// A key object.
    Key(KeyInfo),
    /// A snapshot.
    Snapshot(Box<SnapshotInfo>),
    /// An index object.
    Index(IndexFile),
    /// A pack header.
    Pack(PackInfo),
    /// A tree.
    Tree(Tree),
    /// A blob's plaintext (file content: raw bytes, not JSON).
    Blob(Vec<u8>),
}

/// Finds and decodes the object `what` names.
pub fn cat(repo: &Repository, what: CatRequest<'_>) -> Result<CatObject> {
    Ok(match what {
        CatRequest::Config => CatObject::Config(repo.config().clone()),
        CatRequest::Key(prefix) => {
            let name = repo.find_key(prefix)?;
            let kf = repo.key_file(&name)?;
            CatObject::Key(KeyInfo {
                id: name,
                created: crate::time::format_ns(kf.created_ns),
                host: kf.host,
                user: kf.user,
                kdf: kf.kdf,
                salt: hex::encode(&kf.salt),
            })
        }
        CatRequest::Snapshot(spec) => {
            let (id, snapshot) = crate::select::find_snapshot(repo, spec, &Default::default())?;
            CatObject::Snapshot(Box::new(SnapshotInfo { id, snapshot }))
        }
        CatRequest::Index(prefix) => {
            let name = repo.find_object(ObjectKind::Index, prefix)?;
            CatObject::Index(repo.load_index_object(&name)?)
        }
        CatRequest::Pack(prefix) => CatObject::Pack(pack(repo, prefix)?),
        CatRequest::Tree(id) => {
            let id = TreeId::from_hex(id)?;
            CatObject::Tree(repo.load_tree(&repo.load_index()?, &id)?)
        }
        CatRequest::Blob(id) => {
            let id = BlobId::from_hex(id)?;
            CatObject::Blob(repo.read_blob(&repo.load_index()?, &id)?)
        }
    })
}

fn pack(repo: &Repository, prefix: &str) -> Result<PackInfo> {
    // A pack is a data pack or a tree pack; the prefix must name one of all.
    let (kind, name) = match repo.find_object(ObjectKind::DataPack, prefix) {
        Ok(n) => (ObjectKind::DataPack, n),
        Err(RepositoryError::Prefix(crate::id::PrefixError::NotFound { .. })) => {
            (ObjectKind::TreePack, repo.find_object(ObjectKind::TreePack, prefix)?)
        }
        Err(e) => return Err(e.into()),
    };
    let blobs = repo
        .read_pack_header(kind, &name)?
        .into_iter()
        .map(|e| PackBlob {
            blob_type: match e.blob_type {
                BlobType::Data => "data",
                BlobType::Tree => "tree",
            },
            id: e.id,
            offset: e.offset,
            length: e.length,
            raw_length: e.raw_length,
        })
        .collect();
    Ok(PackInfo {
        id: PackId::from_hex(&name)?,
        kind: kind.to_string(),
        blobs,
    })
}
