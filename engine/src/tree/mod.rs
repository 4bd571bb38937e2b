//! Directory trees: one tree blob per directory, listing its entries.

mod decode;
mod walk;

use serde::{Deserialize, Serialize};

use crate::id::{BlobId, TreeId};

pub(crate) use decode::check_name;
pub use decode::TreeError;
pub(crate) use walk::{resolve_path, walk, Descend, Visitor};

/// Version byte of an encoded tree blob.
pub const TREE_VERSION: u8 = 1;

/// What a tree entry is. The variant order is part of the format (bincode
/// writes the variant index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub enum NodeKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Unix socket (recorded, not restored).
    Socket,
}

impl NodeKind {
    /// The lower-case name used in JSON output and messages (a stable wire
    /// name, unlike the variant's `Debug` form).
    pub fn name(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Dir => "dir",
            NodeKind::Symlink => "symlink",
            NodeKind::Fifo => "fifo",
            NodeKind::CharDevice => "chardevice",
            NodeKind::BlockDevice => "blockdevice",
            NodeKind::Socket => "socket",
        }
    }
}

/// One content blob of a file, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct ContentRef {
    /// Blob id.
    pub id: BlobId,
    /// Plaintext length: lets restore place each blob without the index
    /// storing it (which keeps the in-memory index at 28 bytes a blob).
    pub length: u32,
}

/// An extended attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct Xattr {
    /// Attribute name.
    pub name: Vec<u8>,
    /// Attribute value.
    pub value: Vec<u8>,
}

/// Names beginning with this are a source's metadata kept with an entry
/// (an S3 object's ETag, ...), not file-system attributes: Linux has no
/// `cairn.` namespace, and restore never sets them (format-spec "Trees").
pub const SOURCE_XATTR_PREFIX: &[u8] = b"cairn.";

impl Xattr {
    /// Whether this is a source's metadata rather than a file's attribute.
    pub fn is_source_metadata(&self) -> bool {
        self.name.starts_with(SOURCE_XATTR_PREFIX)
    }
}

/// One directory entry with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct Node {
    /// File name as raw bytes (need not be UTF-8).
    pub name: Vec<u8>,
    /// Kind of entry.
    pub kind: NodeKind,
    /// Permission bits and set-id/sticky bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Owner name, when known.
    pub user: String,
    /// Group name, when known.
    pub group: String,
    /// Modification time, Unix ns.
    pub mtime_ns: i64,
    /// Status-change time, Unix ns.
    pub ctime_ns: i64,
    /// Inode number (change detection, hard links).
    pub inode: u64,
    /// Device number of the file system holding it.
    pub device: u64,
    /// Number of hard links.
    pub nlink: u64,
    /// Device number for device nodes.
    pub rdev: u64,
    /// Size in bytes for files.
    pub size: u64,
    /// Target of a symlink.
    pub symlink_target: Option<Vec<u8>>,
    /// Extended attributes.
    pub xattrs: Vec<Xattr>,
    /// Content blobs of a file.
    pub content: Vec<ContentRef>,
    /// The tree of a directory.
    pub subtree: Option<TreeId>,
}

impl Node {
    /// A node with the given name and kind and every other field empty.
    pub fn new(name: Vec<u8>, kind: NodeKind) -> Self {
        Self {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 0,
            device: 0,
            nlink: 1,
            rdev: 0,
            size: 0,
            symlink_target: None,
            xattrs: Vec::new(),
            content: Vec::new(),
            subtree: None,
        }
    }

    /// The name for display (lossy where not UTF-8).
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// Whether this node shares its inode with another path (hard link).
    pub fn is_hard_linked(&self) -> bool {
        self.kind == NodeKind::File && self.nlink > 1
    }
}

/// A directory: entries sorted by name bytes. Bytes become a `Tree` only
/// through [`Tree::decode`], which enforces format-spec "Tree validity".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, bincode::Encode)]
pub struct Tree {
    /// Entries, sorted by `name`, no duplicates.
    pub nodes: Vec<Node>,
}

// By hand, not derived: the derived decoder claims a whole `Node` (248
// bytes) against the decoder's limit for each entry before reading any,
// 14 times the 18 bytes the smallest entry takes, so trees that serde's
// path read (which claimed only what each entry holds) would exceed the
// tree limit. Entry by entry, the claims are serde's again, and the list
// grows only as entries are actually read, so a hostile count cannot make
// it allocate ahead of the input.
impl<C> bincode::Decode<C> for Tree {
    fn decode<D: bincode::de::Decoder<Context = C>>(d: &mut D) -> Result<Self, bincode::error::DecodeError> {
        let count = <usize as bincode::Decode<C>>::decode(d)?;
        let mut nodes = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            nodes.push(<Node as bincode::Decode<C>>::decode(d)?);
        }
        Ok(Tree { nodes })
    }
}

bincode::impl_borrow_decode!(Tree);

#[cfg(feature = "testing")]
impl Tree {
    /// The plaintext of this tree's blob and the id it is stored under, as
    /// `backup::store_tree` computes them: for generators that write trees
    /// without running a backup (benches' `gen-repo`).
    pub fn encode_blob(&self, keys: &crate::crypto::Keys) -> Result<(TreeId, Vec<u8>), crate::encoding::EncodingError> {
        let bytes = crate::encoding::encode("tree", TREE_VERSION, self)?;
        Ok((TreeId::of_stored_tree(keys.blob_id(&bytes)), bytes))
    }
}

impl Tree {
    /// Finds an entry by name.
    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}
