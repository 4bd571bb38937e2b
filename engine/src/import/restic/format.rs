//! restic's JSON documents (config, key files, snapshots, index files,
//! trees) as its design document and restic 0.19's output show them, and
//! the translation of a tree node into Cairn's [`Node`].
//!
//! Every field a document may leave out has a default: restic writes Go's
//! `omitempty` forms, and older versions wrote fewer fields.

use base64::Engine as _;
use serde::Deserialize;

use crate::tree::{Node, NodeKind, Xattr};

/// `config`.
#[derive(Debug, Deserialize)]
pub(super) struct ConfigJson {
    pub version: u32,
    pub id: String,
}

/// A file of `keys/`.
#[derive(Debug, Deserialize)]
pub(super) struct KeyJson {
    #[serde(default)]
    pub kdf: String,
    #[serde(rename = "N", default)]
    pub n: u64,
    #[serde(default)]
    pub r: u32,
    #[serde(default)]
    pub p: u32,
    #[serde(default)]
    pub salt: String,
    #[serde(default)]
    pub data: String,
}

/// The master key a key file wraps.
#[derive(Debug, Deserialize)]
pub(super) struct MasterKeyJson {
    pub mac: MacJson,
    pub encrypt: String,
}

/// Poly1305-AES's two keys.
#[derive(Debug, Deserialize)]
pub(super) struct MacJson {
    pub k: String,
    pub r: String,
}

/// A file of `snapshots/`.
#[derive(Debug, Clone, Deserialize)]
pub struct ResticSnapshot {
    /// RFC 3339 with nanoseconds and the writer's offset.
    pub time: String,
    /// The root tree's id, hex.
    pub tree: String,
    /// What was backed up.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Host name.
    #[serde(default)]
    pub hostname: String,
    /// User name.
    #[serde(default)]
    pub username: String,
    /// User id.
    #[serde(default)]
    pub uid: u32,
    /// Group id.
    #[serde(default)]
    pub gid: u32,
    /// Exclude patterns.
    #[serde(default)]
    pub excludes: Option<Vec<String>>,
    /// Tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// The snapshot this one was made against.
    #[serde(default)]
    pub parent: Option<String>,
    /// The writer's version.
    #[serde(default)]
    pub program_version: String,
    /// What the backup counted (restic 0.17 and later).
    #[serde(default)]
    pub summary: Option<ResticSummary>,
}

/// The part of a snapshot's summary the importer uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ResticSummary {
    /// Bytes of the files the backup saw: the import's progress estimate.
    #[serde(default)]
    pub total_bytes_processed: u64,
}

/// A file of `index/`.
#[derive(Debug, Deserialize)]
pub(super) struct IndexJson {
    #[serde(default)]
    pub supersedes: Option<Vec<String>>,
    #[serde(default)]
    pub packs: Vec<IndexPackJson>,
}

/// One pack of an index file.
#[derive(Debug, Deserialize)]
pub(super) struct IndexPackJson {
    pub id: String,
    #[serde(default)]
    pub blobs: Vec<IndexBlobJson>,
}

/// One blob of an index file's pack.
#[derive(Debug, Deserialize)]
pub(super) struct IndexBlobJson {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub offset: u64,
    pub length: u64,
    #[serde(default)]
    pub uncompressed_length: Option<u64>,
}

/// A tree blob.
#[derive(Debug, Deserialize)]
pub(crate) struct TreeJson {
    #[serde(default)]
    pub nodes: Vec<NodeJson>,
}

/// One entry of a tree.
#[derive(Debug, Deserialize)]
pub(crate) struct NodeJson {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub mode: u32,
    #[serde(default)]
    pub mtime: Option<String>,
    #[serde(default)]
    pub ctime: Option<String>,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub inode: u64,
    #[serde(default)]
    pub device_id: u64,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub links: u64,
    #[serde(default)]
    pub linktarget: String,
    #[serde(default)]
    pub linktarget_raw: Option<String>,
    #[serde(default)]
    pub extended_attributes: Option<Vec<XattrJson>>,
    #[serde(default)]
    pub device: u64,
    #[serde(default)]
    pub content: Option<Vec<String>>,
    #[serde(default)]
    pub subtree: Option<String>,
}

/// An extended attribute; its value is base64.
#[derive(Debug, Deserialize)]
pub(crate) struct XattrJson {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// Parses a 64-digit hex id.
pub(crate) fn hex_id(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Standard base64, as Go's `[]byte` fields are written.
pub(super) fn base64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// An RFC 3339 time as Unix nanoseconds (0 when absent or unreadable:
/// a time is metadata, not a reason to lose a file).
pub(crate) fn time_ns(s: Option<&str>) -> i64 {
    s.and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .and_then(|t| i64::try_from(t.as_nanosecond()).ok())
        .unwrap_or(0)
}

/// Go's `os.FileMode` bits that are not permissions.
mod go_mode {
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const STICKY: u32 = 1 << 20;
}

/// The Unix permission bits (with set-id and sticky) of a Go file mode.
fn unix_mode(m: u32) -> u32 {
    let mut out = m & 0o777;
    if m & go_mode::SETUID != 0 {
        out |= 0o4000;
    }
    if m & go_mode::SETGID != 0 {
        out |= 0o2000;
    }
    if m & go_mode::STICKY != 0 {
        out |= 0o1000;
    }
    out
}

/// A name as restic writes it: quoted as Go's `strconv.Quote` does, without
/// the quotes (restic 0.19 writes every name so; a backslash itself is
/// `\\`, a byte that is not UTF-8 is `\xff`). Handwritten because it is
/// Go's escape grammar exactly, which no crate offers: `\a \b \f \n \r \t
/// \v \\ \' \"`, `\xHH` and `\OOO` (one byte each), `\uHHHH` and
/// `\UHHHHHHHH` (a code point as UTF-8). `None` when the text is not
/// valid Go escaping; the caller then keeps the name as written.
pub(crate) fn unquote(s: &str) -> Option<Vec<u8>> {
    if !s.contains('\\') {
        return Some(s.as_bytes().to_vec());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex_at = |i: usize, n: usize| -> Option<u32> {
        let digits = std::str::from_utf8(b.get(i..i + n)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = *b.get(i + 1)?;
        i += 2;
        match c {
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'\\' | b'\'' | b'"' => out.push(c),
            b'x' => {
                out.push(u8::try_from(hex_at(i, 2)?).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let digits = std::str::from_utf8(b.get(i - 1..i + 2)?).ok()?;
                out.push(u8::try_from(u32::from_str_radix(digits, 8).ok()?).ok()?);
                i += 2;
            }
            b'u' | b'U' => {
                let n = if c == b'u' { 4 } else { 8 };
                let ch = char::from_u32(hex_at(i, n)?)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += n;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// A name from a restic tree as bytes: unquoted, or as written when it is
/// not valid Go escaping.
pub(crate) fn name(s: &str) -> Vec<u8> {
    unquote(s).unwrap_or_else(|| s.as_bytes().to_vec())
}

/// What a restic node becomes, named `name` (its [`name`]): a Cairn node
/// without content or subtree (the importer fills those), or why it cannot
/// be one.
pub(crate) fn node(n: &NodeJson, name: Vec<u8>) -> Result<Node, String> {
    let kind = match n.kind.as_str() {
        "file" => NodeKind::File,
        "dir" => NodeKind::Dir,
        "symlink" => NodeKind::Symlink,
        "fifo" => NodeKind::Fifo,
        "chardev" => NodeKind::CharDevice,
        "dev" => NodeKind::BlockDevice,
        "socket" => NodeKind::Socket,
        other => {
            return Err(format!(
                "restic recorded it as `{other}`, which has no contents to restore"
            ))
        }
    };
    crate::tree::check_name(&name).map_err(|e| format!("its name cannot be a file name: {e}"))?;
    let mut out = Node::new(name, kind);
    out.mode = unix_mode(n.mode);
    out.uid = n.uid;
    out.gid = n.gid;
    out.user = n.user.clone();
    out.group = n.group.clone();
    out.mtime_ns = time_ns(n.mtime.as_deref());
    out.ctime_ns = time_ns(n.ctime.as_deref());
    out.inode = n.inode;
    out.device = n.device_id;
    out.nlink = n.links.max(1);
    out.rdev = n.device;
    if kind == NodeKind::File {
        out.size = n.size;
    }
    if kind == NodeKind::Symlink {
        let target = match &n.linktarget_raw {
            Some(raw) => base64(raw).ok_or("its link target is not base64")?,
            None => n.linktarget.as_bytes().to_vec(),
        };
        if target.is_empty() || target.contains(&0) {
            return Err("its link target is empty or holds a NUL byte".into());
        }
        out.symlink_target = Some(target);
    }
    for x in n.extended_attributes.iter().flatten() {
        let value = match &x.value {
            Some(v) => base64(v).ok_or_else(|| format!("extended attribute {} is not base64", x.name))?,
            None => Vec::new(),
        };
        if x.name.is_empty() || x.name.contains('\0') {
            return Err("an extended attribute has no usable name".into());
        }
        out.xattrs.push(Xattr {
            name: x.name.as_bytes().to_vec(),
            value,
        });
    }
    // format-spec "Trees": xattrs sorted by name, each name once.
    out.xattrs.sort_by(|a, b| a.name.cmp(&b.name));
    out.xattrs.dedup_by(|a, b| a.name == b.name);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_unquote_as_go_quotes_them() {
        // What restic 0.19.1 wrote for these names (seen with `restic cat blob`).
        assert_eq!(unquote(r"n\xff\xfe").unwrap(), b"n\xff\xfe");
        assert_eq!(unquote(r"back\\slash").unwrap(), b"back\\slash");
        assert_eq!(unquote(r#"q\xff\\z\""#).unwrap(), b"q\xff\\z\"");
        assert_eq!(unquote(r"tab\there").unwrap(), b"tab\there");
        assert_eq!(unquote(r"nl\nx").unwrap(), b"nl\nx");
        assert_eq!(unquote("é").unwrap(), "é".as_bytes());
        assert_eq!(unquote(r"\u00e9\U0001F600\101").unwrap(), "é😀A".as_bytes());
        for bad in [r"end\", r"\q", r"\x4", r"\uD800", r"\777"] {
            assert!(unquote(bad).is_none(), "{bad} was accepted");
        }
    }

    #[test]
    fn go_modes_become_unix_modes() {
        // restic 0.19.1: a 4751 file, a 1777 folder, a 755 folder.
        assert_eq!(unix_mode(8389097), 0o4751);
        assert_eq!(unix_mode(2148532735), 0o1777);
        assert_eq!(unix_mode(2147484141), 0o755);
    }

    #[test]
    fn nodes_keep_their_metadata_and_refuse_what_cannot_be_a_file() {
        let json = r#"{"name":"badlink","type":"symlink","mode":134218239,
            "mtime":"2026-12-07T02:02:02.217267644+01:00","uid":7,"gid":8,"user":"u","group":"g",
            "inode":5,"device_id":9,"links":1,"linktarget":"t\ufffd","linktarget_raw":"dP8=",
            "extended_attributes":[{"name":"user.b","value":"Mg=="},{"name":"user.a","value":"MQ=="}]}"#;
        let j: NodeJson = serde_json::from_str(json).unwrap();
        let n = node(&j, name(&j.name)).unwrap();
        assert_eq!(n.kind, NodeKind::Symlink);
        assert_eq!(n.symlink_target.as_deref(), Some(&b"t\xff"[..]));
        assert_eq!(n.mode, 0o777);
        assert_ne!(n.mtime_ns, 0);
        assert_eq!(n.mtime_ns, time_ns(Some("2026-12-07T01:02:02.217267644Z")));
        assert_eq!((n.uid, n.gid, n.inode, n.device), (7, 8, 5, 9));
        let names: Vec<&[u8]> = n.xattrs.iter().map(|x| x.name.as_slice()).collect();
        assert_eq!(names, [b"user.a".as_slice(), b"user.b"]);
        for bad in [
            r#"{"name":"a/b","type":"file"}"#,
            r#"{"name":"..","type":"dir"}"#,
            r#"{"name":"x","type":"irregular"}"#,
            r#"{"name":"l","type":"symlink","linktarget":""}"#,
        ] {
            let j: NodeJson = serde_json::from_str(bad).unwrap();
            assert!(node(&j, name(&j.name)).is_err(), "{bad}");
        }
    }
}
