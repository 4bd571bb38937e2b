//! A reader of restic repositories (format versions 1 and 2), written from
//! restic's design document (`doc/design.rst`): key files, the config,
//! snapshots, index files, packs and trees. It only reads, through the same
//! [`Backend`]s Cairn's repositories use (restic's layout, `config`,
//! `keys/`, `snapshots/`, `index/` and `data/xx/`, is the same), and takes
//! no restic lock: restic's own readers take a shared lock only to keep a
//! prune away, and the importer survives one (a blob gone is reported as
//! damage of its file).

mod crypto;
pub(crate) mod format;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::backend::{Backend, BackendError, ObjectKind};
use crypto::MasterKey;
pub use format::ResticSnapshot;
use format::{ConfigJson, IndexJson, KeyJson, MasterKeyJson, TreeJson};

/// Most bytes an unpacked document (snapshot, index file) or a blob may
/// decompress to: restic's own blobs are at most 8 MiB and its index files
/// are split at 8 MiB, so this only stops a hostile repository.
const PLAIN_LIMIT: u64 = 1 << 30;

/// Most bytes a data blob may decompress to: restic cuts at most 8 MiB.
const DATA_BLOB_LIMIT: u64 = 64 << 20;

/// Errors of reading a restic repository.
#[derive(Debug, thiserror::Error)]
pub enum ResticError {
    /// The location holds no restic repository.
    #[error("{0} holds no restic repository (no `config` or no key files)")]
    NotARepository(String),
    /// No key file opens with the password.
    #[error("wrong password: no key file of the restic repository opens with it")]
    WrongPassword,
    /// A key file cannot be used.
    #[error("restic key file: {0}")]
    Key(String),
    /// A restic format this reader does not know.
    #[error("{0}")]
    Unsupported(String),
    /// An object or blob is missing, does not authenticate or does not decode.
    #[error("{what}: {detail}")]
    Damaged {
        /// Which object or blob.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The storage failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl ResticError {
    /// What a caller can do about it.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            ResticError::NotARepository(_) => ErrorKind::NotARepository,
            ResticError::WrongPassword => ErrorKind::WrongPassword,
            ResticError::Key(_) | ResticError::Damaged { .. } => ErrorKind::Damaged,
            ResticError::Unsupported(_) => ErrorKind::InvalidInput,
            ResticError::Backend(BackendError::NotFound { .. }) => ErrorKind::Damaged,
            ResticError::Backend(e) => e.kind(),
        }
    }

    fn damaged(what: impl Into<String>, detail: impl Into<String>) -> Self {
        ResticError::Damaged {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

/// A restic repository opened with a password.
pub struct ResticRepo {
    backend: Arc<dyn Backend>,
    key: MasterKey,
    version: u32,
    id: [u8; 32],
    remote: bool,
}

/// Where a blob is: its pack (by number), offset, stored length and, when
/// compressed, its plaintext length (0 when stored as is).
#[derive(Debug, Clone, Copy)]
struct BlobLoc {
    pack: u32,
    offset: u32,
    length: u32,
    raw: u32,
}

/// Which blobs are in which packs: restic's index files, loaded once.
#[derive(Default)]
pub struct ResticIndex {
    packs: Vec<[u8; 32]>,
    data: HashMap<[u8; 32], BlobLoc>,
    trees: HashMap<[u8; 32], BlobLoc>,
    /// Further copies of blobs indexed in more than one pack.
    others: HashMap<[u8; 32], Vec<BlobLoc>>,
    /// The index files it was loaded from, sorted.
    names: Vec<String>,
}

impl ResticIndex {
    /// The names of the index files it was loaded from, sorted.
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// The stored length of data blob `id` (0 when not indexed).
    pub(crate) fn stored_len(&self, id: &[u8; 32]) -> u64 {
        self.data.get(id).map_or(0, |l| u64::from(l.length))
    }
}

/// The snapshots of a restic repository, and those that could not be read.
pub struct ResticSnapshots {
    /// Each snapshot with its id (the SHA-256 of its file).
    pub snapshots: Vec<([u8; 32], ResticSnapshot)>,
    /// Snapshot files that could not be read, and why.
    pub damaged: Vec<ResticError>,
}

impl ResticRepo {
    /// Opens the restic repository in `backend` with `password`: tries each
    /// key file (cheapest scrypt first) and reads the config.
    pub fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Self, ResticError> {
        let config = match backend.read(ObjectKind::Config, "config") {
            Ok(c) => c,
            Err(BackendError::NotFound { .. }) => return Err(ResticError::NotARepository(backend.location())),
            Err(e) => return Err(e.into()),
        };
        let mut keys: Vec<KeyJson> = Vec::new();
        let mut unreadable = Vec::new();
        for info in backend.list(ObjectKind::Key)? {
            let parsed = backend
                .read(ObjectKind::Key, &info.name)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<KeyJson>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(k) => keys.push(k),
                Err(e) => unreadable.push(format!("keys/{}: {e}", info.name)),
            }
        }
        if keys.is_empty() {
            let why = unreadable.first().map(|u| format!(" ({u})")).unwrap_or_default();
            return Err(ResticError::NotARepository(format!("{}{why}", backend.location())));
        }
        for u in &unreadable {
            tracing::warn!("restic key file {u}; trying the others");
        }
        keys.sort_by_key(|k| k.n.saturating_mul(u64::from(k.r)).saturating_mul(u64::from(k.p)));
        let mut key = None;
        for k in &keys {
            key = open_key(k, password)?;
            if key.is_some() {
                break;
            }
        }
        let key = key.ok_or(ResticError::WrongPassword)?;
        let plain = key
            .open(&config)
            .ok_or_else(|| ResticError::damaged("restic config", "does not authenticate with the master key"))?;
        let c: ConfigJson =
            serde_json::from_slice(&plain).map_err(|e| ResticError::damaged("restic config", e.to_string()))?;
        if c.version != 1 && c.version != 2 {
            return Err(ResticError::Unsupported(format!(
                "restic repository format version {} is not one this reader knows (1 and 2)",
                c.version
            )));
        }
        let id = format::hex_id(&c.id)
            .ok_or_else(|| ResticError::damaged("restic config", "its id is not 64 hex digits"))?;
        Ok(Self {
            remote: backend.location().starts_with("s3:"),
            backend,
            key,
            version: c.version,
            id,
        })
    }

    /// The repository's id (from its config).
    pub fn id(&self) -> [u8; 32] {
        self.id
    }

    /// Whether reads are network round trips (S3), so worth overlapping.
    pub(crate) fn remote(&self) -> bool {
        self.remote
    }

    /// The repository format version (1 or 2).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// An unpacked document (snapshot, index file): checked against its
    /// name (the SHA-256 of the stored bytes), opened, decompressed.
    fn load_document(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, ResticError> {
        let what = || format!("restic {}", kind.path(name));
        let stored = self.backend.read(kind, name)?;
        if hex::encode(Sha256::digest(&stored)) != name {
            return Err(ResticError::damaged(
                what(),
                "its contents do not match its name (SHA-256)",
            ));
        }
        let plain = self
            .key
            .open(&stored)
            .ok_or_else(|| ResticError::damaged(what(), "does not authenticate with the master key"))?;
        match plain.first() {
            Some(b'{') | Some(b'[') => Ok(plain),
            Some(2) if self.version >= 2 => {
                decompress(&plain[1..], PLAIN_LIMIT).map_err(|e| ResticError::damaged(what(), e))
            }
            _ => Err(ResticError::damaged(what(), "unknown encoding version")),
        }
    }

    /// Every snapshot, and the snapshot files that cannot be read.
    pub fn snapshots(&self) -> Result<ResticSnapshots, ResticError> {
        let mut out = ResticSnapshots {
            snapshots: Vec::new(),
            damaged: Vec::new(),
        };
        for info in self.backend.list(ObjectKind::Snapshot)? {
            let Some(id) = format::hex_id(&info.name) else { continue };
            let parsed = self.load_document(ObjectKind::Snapshot, &info.name).and_then(|plain| {
                serde_json::from_slice::<ResticSnapshot>(&plain)
                    .map_err(|e| ResticError::damaged(format!("restic snapshot {}", info.name), e.to_string()))
            });
            match parsed {
                Ok(s) => out.snapshots.push((id, s)),
                Err(e) if e.kind() == crate::error::ErrorKind::Damaged => out.damaged.push(e),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The names of restic's index files now, sorted (to tell whether a
    /// loaded index is still current).
    pub(crate) fn index_names(&self) -> Result<Vec<String>, ResticError> {
        let mut names: Vec<String> = self
            .backend
            .list(ObjectKind::Index)?
            .into_iter()
            .map(|i| i.name)
            .filter(|n| format::hex_id(n).is_some())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Loads every index file (leaving out those another one supersedes).
    /// An index file that cannot be read is reported and skipped: its
    /// blobs then read as missing, and their files as damaged.
    pub fn load_index(&self) -> Result<(ResticIndex, Vec<ResticError>), ResticError> {
        let mut files = Vec::new();
        let mut damaged = Vec::new();
        let mut damaged_names = Vec::new();
        for info in self.backend.list(ObjectKind::Index)? {
            // restic's own temporary files (`ID-tmp-...`) are not index files.
            if format::hex_id(&info.name).is_none() {
                continue;
            }
            let parsed = self.load_document(ObjectKind::Index, &info.name).and_then(|plain| {
                serde_json::from_slice::<IndexJson>(&plain)
                    .map_err(|e| ResticError::damaged(format!("restic index/{}", info.name), e.to_string()))
            });
            match parsed {
                Ok(f) => files.push((info.name, f)),
                Err(e) if e.kind() == crate::error::ErrorKind::Damaged => {
                    damaged_names.push(info.name);
                    damaged.push(e)
                }
                Err(e) => return Err(e),
            }
        }
        let superseded: HashSet<String> = files
            .iter()
            .flat_map(|(_, f)| f.supersedes.iter().flatten().cloned())
            .collect();
        let mut index = ResticIndex {
            names: files.iter().map(|(n, _)| n.clone()).chain(damaged_names).collect(),
            ..ResticIndex::default()
        };
        index.names.sort();
        let mut pack_numbers: HashMap<[u8; 32], u32> = HashMap::new();
        for (name, f) in files {
            if superseded.contains(&name) {
                continue;
            }
            for p in f.packs {
                let Some(pid) = format::hex_id(&p.id) else {
                    damaged.push(ResticError::damaged(
                        format!("restic index/{name}"),
                        "a pack id is not hex",
                    ));
                    continue;
                };
                let n = *pack_numbers.entry(pid).or_insert_with(|| {
                    index.packs.push(pid);
                    (index.packs.len() - 1) as u32
                });
                for b in p.blobs {
                    let (Some(id), Ok(offset), Ok(length)) =
                        (format::hex_id(&b.id), u32::try_from(b.offset), u32::try_from(b.length))
                    else {
                        damaged.push(ResticError::damaged(
                            format!("restic index/{name}"),
                            "a blob entry is out of range",
                        ));
                        continue;
                    };
                    let raw = b.uncompressed_length.and_then(|l| u32::try_from(l).ok()).unwrap_or(0);
                    let loc = BlobLoc {
                        pack: n,
                        offset,
                        length,
                        raw,
                    };
                    let map = if b.kind == "tree" {
                        &mut index.trees
                    } else {
                        &mut index.data
                    };
                    match map.entry(id) {
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(loc);
                        }
                        // A blob in several packs (restic may write one twice):
                        // the others are tried when the first cannot be read.
                        std::collections::hash_map::Entry::Occupied(_) => index.others.entry(id).or_default().push(loc),
                    }
                }
            }
        }
        Ok((index, damaged))
    }

    /// Blob `id` of the given kind: read from its pack, opened,
    /// decompressed and checked against its id; each further copy the index
    /// lists is tried when one cannot be read.
    pub fn read_blob(&self, index: &ResticIndex, id: &[u8; 32], tree: bool) -> Result<Vec<u8>, ResticError> {
        let map = if tree { &index.trees } else { &index.data };
        let first = map.get(id).ok_or_else(|| {
            ResticError::damaged(
                format!("restic {} blob {}", if tree { "tree" } else { "data" }, hex::encode(id)),
                "is in no index file",
            )
        })?;
        let mut result = self.read_at(index, id, tree, first);
        for loc in index.others.get(id).into_iter().flatten() {
            match &result {
                Err(e) if e.kind() == crate::error::ErrorKind::Damaged => result = self.read_at(index, id, tree, loc),
                _ => break,
            }
        }
        result
    }

    fn read_at(&self, index: &ResticIndex, id: &[u8; 32], tree: bool, loc: &BlobLoc) -> Result<Vec<u8>, ResticError> {
        let what = || format!("restic {} blob {}", if tree { "tree" } else { "data" }, hex::encode(id));
        let pack = index
            .packs
            .get(loc.pack as usize)
            .ok_or_else(|| ResticError::damaged(what(), "pack number out of range"))?;
        let pack = hex::encode(pack);
        let stored = self
            .backend
            .read_range(
                ObjectKind::DataPack,
                &pack,
                u64::from(loc.offset),
                u64::from(loc.length),
            )
            .map_err(|e| match e {
                BackendError::NotFound { .. } | BackendError::OutOfRange { .. } => {
                    ResticError::damaged(what(), format!("its pack {pack} is missing or too short ({e})"))
                }
                e => ResticError::Backend(e),
            })?;
        let plain = self
            .key
            .open(&stored)
            .ok_or_else(|| ResticError::damaged(what(), format!("does not authenticate (pack {pack})")))?;
        let plain = if loc.raw > 0 {
            // A hostile index must not make a blob claim gigabytes: restic's
            // data blobs are at most 8 MiB; trees of huge folders are larger.
            let limit = if tree { PLAIN_LIMIT } else { DATA_BLOB_LIMIT };
            if u64::from(loc.raw) > limit {
                return Err(ResticError::damaged(
                    what(),
                    format!("claims {} bytes, more than {limit}", loc.raw),
                ));
            }
            let out = decompress(&plain, u64::from(loc.raw)).map_err(|e| ResticError::damaged(what(), e))?;
            if out.len() != loc.raw as usize {
                return Err(ResticError::damaged(
                    what(),
                    "decompresses to another length than indexed",
                ));
            }
            out
        } else {
            plain
        };
        if Sha256::digest(&plain).as_slice() != id {
            return Err(ResticError::damaged(
                what(),
                format!("its contents do not match its id (pack {pack})"),
            ));
        }
        Ok(plain)
    }

    /// Tree blob `id`, decoded.
    pub(crate) fn load_tree(&self, index: &ResticIndex, id: &[u8; 32]) -> Result<TreeJson, ResticError> {
        let plain = self.read_blob(index, id, true)?;
        serde_json::from_slice(&plain)
            .map_err(|e| ResticError::damaged(format!("restic tree {}", hex::encode(id)), e.to_string()))
    }
}

/// The master key that key file `k` wraps, if `password` opens it;
/// `None` (with a warning where the file is unusable) to try the next.
fn open_key(k: &KeyJson, password: &[u8]) -> Result<Option<MasterKey>, ResticError> {
    use zeroize::{Zeroize, Zeroizing};
    if k.kdf != "scrypt" {
        tracing::warn!("a restic key file uses KDF `{}`, which is not scrypt; skipped", k.kdf);
        return Ok(None);
    }
    let (Some(salt), Some(data)) = (format::base64(&k.salt), format::base64(&k.data)) else {
        tracing::warn!("a restic key file's salt or data is not base64; skipped");
        return Ok(None);
    };
    let user = match MasterKey::derive(password, &salt, k.n, k.r, k.p) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!("{e}; that key file is skipped");
            return Ok(None);
        }
    };
    let Some(plain) = user.open(&data).map(Zeroizing::new) else {
        return Ok(None);
    };
    let mut m: MasterKeyJson =
        serde_json::from_slice(&plain).map_err(|e| ResticError::Key(format!("the master key does not decode: {e}")))?;
    let parts = (
        format::base64(&m.encrypt).map(Zeroizing::new),
        format::base64(&m.mac.k).map(Zeroizing::new),
        format::base64(&m.mac.r).map(Zeroizing::new),
    );
    m.encrypt.zeroize();
    m.mac.k.zeroize();
    m.mac.r.zeroize();
    let (Some(enc), Some(mk), Some(mr)) = parts else {
        return Err(ResticError::Key("the master key's parts are not base64".into()));
    };
    MasterKey::from_parts(&enc, &mk, &mr)
        .map(Some)
        .ok_or_else(|| ResticError::Key("the master key's parts have the wrong lengths".into()))
}

/// zstd-decompresses at most `limit` bytes; more is an error.
fn decompress(data: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let dec = zstd::stream::read::Decoder::new(data).map_err(|e| format!("zstd: {e}"))?;
    dec.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("decompresses to more than {limit} bytes"));
    }
    Ok(out)
}
