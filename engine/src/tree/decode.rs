//! The one tree decoder: bytes → [`Tree`], refusing every tree that breaks
//! the validity rules of format-spec "Tree validity". Every reader
//! (restore, ls, dump, diff, check, backup's parent, rewrite) gets its trees
//! through [`Tree::decode`] (via `Repository::load_tree`), so a hostile or
//! damaged tree is refused before any of them acts on it.

use super::{Node, NodeKind, Tree, TREE_VERSION};
use crate::encoding::{self, EncodingError, Limit};

/// Why a tree blob's plaintext is not a valid tree.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The bytes do not decode as a tree.
    #[error(transparent)]
    Decode(#[from] EncodingError),
    /// It decodes, but breaks a validity rule.
    #[error("{0}")]
    Invalid(String),
}

/// Largest number of bytes the bincode decoder may claim for one tree
/// (format-spec "Decoder bounds"): a tree is one blob, at most
/// `blob::MAX_PLAINTEXT` (1 GiB) of plaintext.
pub const TREE_LIMIT: Limit = Limit::Gib1;

impl Tree {
    /// Decodes a tree blob's plaintext and checks it (format-spec "Tree
    /// validity"): the only way bytes become a [`Tree`].
    pub fn decode(bytes: &[u8]) -> Result<Tree, TreeError> {
        let (_, tree): (u8, Tree) = encoding::decode("tree", TREE_VERSION, TREE_LIMIT, bytes)?;
        tree.validate().map_err(TreeError::Invalid)?;
        Ok(tree)
    }

    /// Checks the validity rules; the message names the first entry that
    /// breaks one.
    pub fn validate(&self) -> Result<(), String> {
        for n in &self.nodes {
            check_node(n).map_err(|why| format!("entry {}: {why}", quoted(&n.name)))?;
        }
        for pair in self.nodes.windows(2) {
            let (a, b) = (&pair[0].name, &pair[1].name);
            match a.cmp(b) {
                std::cmp::Ordering::Less => {}
                // Two entries of one name: a restore would apply the second
                // over the first (a symlink `x` over a file `x` made
                // set_permissions follow it out of the target).
                std::cmp::Ordering::Equal => return Err(format!("two entries are named {}", quoted(a))),
                std::cmp::Ordering::Greater => {
                    return Err(format!(
                        "entries are not sorted by name ({} before {})",
                        quoted(a),
                        quoted(b)
                    ))
                }
            }
        }
        Ok(())
    }
}

/// Whether `name` may name a tree entry: not empty, not `.` or `..`, and
/// without `/` or NUL (a path component, never a path).
pub fn check_name(name: &[u8]) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name == b"." || name == b".." {
        return Err("`.` and `..` are not entry names".into());
    }
    if name.contains(&b'/') {
        return Err("name holds `/`".into());
    }
    if name.contains(&0) {
        return Err("name holds a NUL byte".into());
    }
    Ok(())
}

fn check_node(n: &Node) -> Result<(), String> {
    check_name(&n.name)?;
    let kind = n.kind.name();
    match (n.kind, n.subtree.is_some()) {
        (NodeKind::Dir, false) => return Err("a directory without a subtree".into()),
        (NodeKind::Dir, true) | (_, false) => {}
        (_, true) => return Err(format!("a {kind} with a subtree")),
    }
    match (n.kind, &n.symlink_target) {
        (NodeKind::Symlink, None) => return Err("a symlink without a target".into()),
        (NodeKind::Symlink, Some(t)) if t.is_empty() => return Err("a symlink with an empty target".into()),
        (NodeKind::Symlink, Some(t)) if t.contains(&0) => return Err("a symlink target holds a NUL byte".into()),
        (NodeKind::Symlink, Some(_)) | (_, None) => {}
        (_, Some(_)) => return Err(format!("a {kind} with a symlink target")),
    }
    // A file's `size` differing from its content is not refused (T5 binds
    // writers only): backups before 2026-12 recorded `stat`'s size for a
    // file that changed while it was read, and refusing those trees would
    // make whole folders of existing repositories unreadable. Restore writes
    // the content, so the length on disk is the content's.
    if n.kind != NodeKind::File && !n.content.is_empty() {
        return Err(format!("a {kind} with content"));
    }
    for x in &n.xattrs {
        if x.name.is_empty() || x.name.contains(&0) {
            return Err(format!(
                "extended attribute name {} is empty or holds NUL",
                quoted(&x.name)
            ));
        }
    }
    Ok(())
}

/// A name for messages: UTF-8 as is, other bytes escaped, so that a hostile
/// name cannot put control characters on the user's terminal.
fn quoted(name: &[u8]) -> String {
    format!("`{}`", name.escape_ascii())
}

#[cfg(test)]
mod tests;
