//! One test per validity rule: each hand-made tree breaks exactly one.

use super::*;
use crate::encoding;
use crate::id::{BlobId, TreeId};
use crate::tree::{ContentRef, Xattr};

fn file(name: &str, lengths: &[u32]) -> Node {
    let mut n = Node::new(name.as_bytes().to_vec(), NodeKind::File);
    n.content = lengths
        .iter()
        .map(|&length| ContentRef {
            id: BlobId::from_bytes([length as u8; 32]),
            length,
        })
        .collect();
    n.size = lengths.iter().map(|&l| u64::from(l)).sum();
    n
}

fn dir(name: &str) -> Node {
    let mut n = Node::new(name.as_bytes().to_vec(), NodeKind::Dir);
    n.subtree = Some(TreeId::from_bytes([7; 32]));
    n
}

fn symlink(name: &str, target: &str) -> Node {
    let mut n = Node::new(name.as_bytes().to_vec(), NodeKind::Symlink);
    n.symlink_target = Some(target.as_bytes().to_vec());
    n
}

/// Encodes `nodes` as they are (no sorting) and decodes them again.
fn decode(nodes: Vec<Node>) -> Result<Tree, TreeError> {
    let bytes = encoding::encode("tree", TREE_VERSION, &Tree { nodes }).unwrap();
    Tree::decode(&bytes)
}

fn refused(nodes: Vec<Node>, want: &str) {
    match decode(nodes) {
        Err(TreeError::Invalid(msg)) => assert!(msg.contains(want), "`{msg}` does not say `{want}`"),
        other => panic!("expected an invalid tree ({want}), got {other:?}"),
    }
}

#[test]
fn a_valid_tree_decodes_as_it_was() {
    let mut fifo = Node::new(b"pipe".to_vec(), NodeKind::Fifo);
    fifo.xattrs = vec![Xattr {
        name: b"user.x".to_vec(),
        value: vec![],
    }];
    let nodes = vec![
        file("a", &[10, 20]),
        dir("b"),
        file("empty", &[]),
        symlink("link", "../x"),
        fifo,
        file("\u{e9}t\u{e9}", &[1]),
    ];
    assert_eq!(decode(nodes.clone()).unwrap().nodes, nodes);
    assert_eq!(decode(Vec::new()).unwrap(), Tree::default());
}

/// The case: a file and a symlink of the same name.
#[test]
fn a_file_and_a_symlink_of_the_same_name_are_refused() {
    refused(vec![file("x", &[3]), symlink("x", "/etc")], "two entries are named `x`");
}

#[test]
fn duplicate_names_of_the_same_kind_are_refused() {
    refused(vec![dir("d"), dir("d")], "two entries are named `d`");
}

#[test]
fn unsorted_entries_are_refused() {
    refused(vec![file("b", &[]), file("a", &[])], "not sorted");
    // Byte order, not a locale's: `B` (0x42) sorts before `a` (0x61).
    assert!(decode(vec![file("B", &[]), file("a", &[])]).is_ok());
    refused(vec![file("a", &[]), file("B", &[])], "not sorted");
}

#[test]
fn unsafe_names_are_refused() {
    refused(vec![file("", &[])], "empty name");
    refused(vec![file(".", &[])], "`.` and `..`");
    refused(vec![dir("..")], "`.` and `..`");
    refused(vec![file("a/b", &[])], "`/`");
    refused(vec![file("/etc", &[])], "`/`");
    refused(vec![file("a\0b", &[])], "NUL");
    // Names that merely look odd are fine.
    assert!(decode(vec![file("...", &[]), file(".hidden", &[]), file("a\\b", &[])]).is_ok());
}

#[test]
fn a_directory_needs_a_subtree_and_nothing_else_may_have_one() {
    let mut d = dir("d");
    d.subtree = None;
    refused(vec![d], "a directory without a subtree");
    let mut f = file("f", &[]);
    f.subtree = Some(TreeId::from_bytes([1; 32]));
    refused(vec![f], "a file with a subtree");
    let mut l = symlink("l", "t");
    l.subtree = Some(TreeId::from_bytes([1; 32]));
    refused(vec![l], "a symlink with a subtree");
}

#[test]
fn a_symlink_needs_a_usable_target_and_nothing_else_may_have_one() {
    let mut l = symlink("l", "t");
    l.symlink_target = None;
    refused(vec![l], "a symlink without a target");
    refused(vec![symlink("l", "")], "empty target");
    refused(vec![symlink("l", "a\0b")], "NUL");
    let mut f = file("f", &[]);
    f.symlink_target = Some(b"/etc/passwd".to_vec());
    refused(vec![f], "a file with a symlink target");
}

#[test]
fn only_files_have_content_and_an_old_size_mismatch_still_reads() {
    // Older backups recorded stat's size for a file that changed while it
    // was read: such trees must stay readable (T5 binds writers only).
    let mut f = file("f", &[4, 5]);
    f.size = 10;
    let t = decode(vec![f]).unwrap();
    assert_eq!(t.nodes[0].size, 10);
    let mut d = dir("d");
    d.content = file("x", &[1]).content;
    refused(vec![d], "a dir with content");
}

#[test]
fn extended_attribute_names_must_be_usable() {
    let mut f = file("f", &[]);
    f.xattrs = vec![Xattr {
        name: Vec::new(),
        value: b"v".to_vec(),
    }];
    refused(vec![f], "extended attribute name");
}

#[test]
fn names_in_messages_are_escaped() {
    let Err(TreeError::Invalid(msg)) = decode(vec![file("\x1b[31mred/", &[])]) else {
        panic!("refused expected");
    };
    assert!(!msg.contains('\x1b'), "{msg}");
    assert!(msg.contains("\\x1b[31mred/"), "{msg}");
}

#[test]
fn bytes_that_are_no_tree_are_a_decode_error() {
    for bytes in [&[][..], &[1], &[1, 5], &[2, 0], &[1, 0, 0]] {
        assert!(matches!(Tree::decode(bytes), Err(TreeError::Decode(_))), "{bytes:?}");
    }
}

/// The smallest valid entries (one-letter names, every number zero, no
/// content) are what most pushes the decoder's claimed bytes above the
/// body's length: each one claims the in-memory size of a `Node` for
/// 20-odd bytes read. A tree of them must still decode, at every size.
#[test]
fn trees_of_the_smallest_entries_decode() {
    for count in [1usize, 7, 100, 5_000, 60_000] {
        let nodes: Vec<Node> = (0..count)
            .map(|i| Node::new(format!("{i:06}").into_bytes(), NodeKind::File))
            .collect();
        let back = decode(nodes.clone()).unwrap_or_else(|e| panic!("{count} entries: {e}"));
        assert_eq!(back.nodes, nodes);
        let empty_names: Vec<Node> = (0..count).map(|_| Node::new(Vec::new(), NodeKind::Fifo)).collect();
        // Refused by a validity rule, never by the decoder's bound.
        let r = decode(empty_names);
        assert!(matches!(r, Err(TreeError::Invalid(_))), "{count} entries: {r:?}");
    }
}
