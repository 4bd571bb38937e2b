//! Tests of the re-chunk path: two in-memory repositories with different
//! chunkers, a real backup into the source, `rechunk_tree` into the
//! destination, and every file read back through the destination alone.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::rechunk::{rechunk_tree, RechunkError, RechunkStats};
use crate::backend::memory::MemoryBackend;
use crate::backup::{backup, store_tree, BackupOptions, BackupSource, Saver};
use crate::chunker::{ChunkBuffer, ChunkerParams};
use crate::id::TreeId;
use crate::index::{Index, IndexFile};
use crate::repository::{pack_kind, InitOptions, Repository};
use crate::testing::{noise, CHEAP_KDF};
use crate::tree::{resolve_path, Node, NodeKind, Xattr};

const SRC_PARAMS: ChunkerParams = ChunkerParams {
    seed: 0x5eed_0001,
    min_size: 16 * 1024,
    avg_size: 64 * 1024,
    max_size: 256 * 1024,
};
const DST_PARAMS: ChunkerParams = ChunkerParams {
    seed: 0x5eed_0002,
    min_size: 32 * 1024,
    avg_size: 128 * 1024,
    max_size: 512 * 1024,
};
/// Several source packs (1 MiB each), so the big file is read in several
/// runs by the read-ahead threads.
const BIG: usize = 3 * 1024 * 1024 + 12345;

fn repo(params: ChunkerParams) -> (Arc<MemoryBackend>, Repository) {
    let backend = Arc::new(MemoryBackend::new());
    let opts = InitOptions {
        kdf: CHEAP_KDF,
        chunker: Some(params),
        pack_size: 1024 * 1024,
        ..Default::default()
    };
    let repo = Repository::init(backend.clone(), b"pw", opts).unwrap();
    (backend, repo)
}

/// data/{big.bin, empty, zeros, link -> big.bin, hard1 = hard2, sub/a.txt,
/// sub/deeper/b.txt, other/c.txt}.
fn make_tree(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(data.join("other")).unwrap();
    std::fs::write(data.join("big.bin"), noise(BIG, 7)).unwrap();
    std::fs::write(data.join("empty"), b"").unwrap();
    // One blob many times over: runs that repeat, not follow, each other.
    std::fs::write(data.join("zeros"), vec![0u8; 1024 * 1024]).unwrap();
    std::os::unix::fs::symlink("big.bin", data.join("link")).unwrap();
    std::fs::write(data.join("hard1"), noise(100_000, 11)).unwrap();
    std::fs::hard_link(data.join("hard1"), data.join("hard2")).unwrap();
    std::fs::write(data.join("sub/a.txt"), b"alpha\n").unwrap();
    std::fs::write(data.join("sub/deeper/b.txt"), noise(300_000, 13)).unwrap();
    std::fs::write(data.join("other/c.txt"), b"gamma\n").unwrap();
    data
}

/// Backs up `data` into `src` and returns the snapshot's root with one
/// extra file at the top carrying a source's `cairn.*` metadata (what an
/// S3 backup records), whose content is big.bin's.
fn back_up(src: &Repository, data: &Path) -> TreeId {
    let snap = backup(
        src,
        BackupSource::Paths(vec![data.to_path_buf()]),
        &BackupOptions::default(),
    )
    .unwrap()
    .snapshot;
    let index = src.load_index().unwrap();
    let big = resolve_path(src, &index, &snap.tree, data.join("big.bin"))
        .unwrap()
        .unwrap();
    let mut tree = src.load_tree(&index, &snap.tree).unwrap();
    let mut extra = big.clone();
    extra.name = b"zz-object".to_vec();
    extra.xattrs = vec![Xattr {
        name: b"cairn.etag".to_vec(),
        value: b"\"0123abcd\"".to_vec(),
    }];
    tree.nodes.push(extra);
    tree.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let saver = Saver::start(src, Arc::new(index), 1);
    let root = store_tree(src, &saver, &tree).unwrap();
    saver.finish().unwrap();
    root
}

/// Every node below `root` by path.
fn nodes(repo: &Repository, index: &Index, root: &TreeId) -> BTreeMap<PathBuf, Node> {
    fn go(repo: &Repository, index: &Index, id: &TreeId, at: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        for n in repo.load_tree(index, id).unwrap().nodes {
            let path = at.join(std::ffi::OsStr::from_bytes(&n.name));
            if let Some(sub) = n.subtree {
                go(repo, index, &sub, &path, out);
            }
            out.insert(path, n);
        }
    }
    let mut out = BTreeMap::new();
    go(repo, index, root, Path::new("/"), &mut out);
    out
}

fn file_bytes(repo: &Repository, index: &Index, node: &Node) -> Vec<u8> {
    node.content
        .iter()
        .flat_map(|c| repo.read_blob(index, &c.id).unwrap())
        .collect()
}

struct Pair {
    src_backend: Arc<MemoryBackend>,
    src: Repository,
    dst: Repository,
}

impl Pair {
    fn new() -> Self {
        let (src_backend, src) = repo(SRC_PARAMS);
        let (_, dst) = repo(DST_PARAMS);
        Self { src_backend, src, dst }
    }

    fn rechunk_with(
        &self,
        src_index: &Index,
        root: &TreeId,
        prior: Option<(TreeId, TreeId)>,
    ) -> Result<(TreeId, RechunkStats, u64), RechunkError> {
        let dst_index = self.dst.load_index().unwrap();
        let saver = Saver::start(&self.dst, Arc::new(self.dst.load_index().unwrap()), 2);
        let done = std::sync::atomic::AtomicU64::new(0);
        let progress = |n: u64| {
            done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        };
        let r = rechunk_tree(
            &self.src,
            src_index,
            &self.dst,
            &dst_index,
            &saver,
            &DST_PARAMS,
            root,
            prior,
            &progress,
            None,
        );
        saver.finish().unwrap();
        r.map(|(id, stats)| (id, stats, done.into_inner()))
    }

    fn rechunk(&self, root: &TreeId, prior: Option<(TreeId, TreeId)>) -> (TreeId, RechunkStats, u64) {
        self.rechunk_with(&self.src.load_index().unwrap(), root, prior).unwrap()
    }

    /// Asserts the destination's tree `dst_root` is `src_root` re-chunked:
    /// same paths and metadata, same bytes, contents cut by the
    /// destination's chunker. Returns the source's nodes.
    fn assert_same(&self, src_root: &TreeId, dst_root: &TreeId) -> BTreeMap<PathBuf, Node> {
        let (si, di) = (self.src.load_index().unwrap(), self.dst.load_index().unwrap());
        let (a, b) = (nodes(&self.src, &si, src_root), nodes(&self.dst, &di, dst_root));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (path, s) in &a {
            let d = &b[path];
            let strip = |n: &Node| Node {
                content: Vec::new(),
                subtree: None,
                ..n.clone()
            };
            assert_eq!(strip(s), strip(d), "metadata of {}", path.display());
            if s.kind == NodeKind::File {
                let bytes = file_bytes(&self.src, &si, s);
                assert_eq!(bytes.len() as u64, s.size);
                assert!(file_bytes(&self.dst, &di, d) == bytes, "contents of {}", path.display());
                // Cut by the destination's chunker, not copied blob by blob.
                let mut buf = ChunkBuffer::new(&DST_PARAMS);
                let cuts: Vec<u32> = buf.chunks(&bytes[..]).map(|c| c.unwrap().len() as u32).collect();
                assert_eq!(
                    d.content.iter().map(|c| c.length).collect::<Vec<_>>(),
                    cuts,
                    "{}",
                    path.display()
                );
            }
        }
        a
    }
}

fn non_empty_files(n: &BTreeMap<PathBuf, Node>) -> u64 {
    n.values()
        .filter(|n| n.kind == NodeKind::File && !n.content.is_empty())
        .count() as u64
}

#[test]
fn rechunks_every_file_with_the_destination_chunker_and_keeps_all_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let data = make_tree(dir.path());
    let p = Pair::new();
    let root = back_up(&p.src, &data);
    let (dst_root, stats, progressed) = p.rechunk(&root, None);
    let src_nodes = p.assert_same(&root, &dst_root);

    let big = &src_nodes[&data.join("big.bin")];
    assert!(big.content.len() > 8, "big.bin is {} source chunks", big.content.len());
    let si = p.src.load_index().unwrap();
    let di = p.dst.load_index().unwrap();
    let dst_big = resolve_path(&p.dst, &di, &dst_root, data.join("big.bin"))
        .unwrap()
        .unwrap();
    // Different chunkers cut differently: not one cut in the same place.
    let ends = |n: &Node| {
        n.content
            .iter()
            .scan(0u64, |at, c| {
                *at += u64::from(c.length);
                Some(*at)
            })
            .collect::<Vec<_>>()
    };
    let (se, de) = (ends(big), ends(&dst_big));
    assert_ne!(se, de);
    assert!(dst_big.content.iter().all(|c| !si.contains(&c.id)));

    let link = &src_nodes[&data.join("link")];
    assert_eq!(link.symlink_target.as_deref(), Some(&b"big.bin"[..]));
    let (h1, h2) = (&src_nodes[&data.join("hard1")], &src_nodes[&data.join("hard2")]);
    assert!(h1.is_hard_linked() && h1.inode == h2.inode);
    let top = nodes(&p.dst, &di, &dst_root);
    assert_eq!(top[Path::new("/zz-object")].xattrs[0].name, b"cairn.etag");
    assert_eq!(top[&data.join("hard1")].content, top[&data.join("hard2")].content);

    // Every distinct content read once: the second name of the hard link
    // and zz-object (big.bin's content) are not read again.
    let files = non_empty_files(&src_nodes);
    let distinct: BTreeMap<_, _> = src_nodes
        .values()
        .filter(|n| n.kind == NodeKind::File && !n.content.is_empty())
        .map(|n| {
            (
                n.content.iter().map(|c| c.id).collect::<Vec<_>>(),
                n.content.len() as u64,
            )
        })
        .collect();
    assert_eq!(distinct.len() as u64, files - 2);
    assert_eq!(
        (stats.files_read, stats.files_reused),
        (distinct.len() as u64, files - distinct.len() as u64)
    );
    assert_eq!(stats.blobs_read, distinct.values().sum::<u64>());
    let bytes: u64 = src_nodes
        .values()
        .filter(|n| n.kind == NodeKind::File)
        .map(|n| n.size)
        .sum();
    assert_eq!(progressed, bytes);
    assert!(stats.bytes_read > 0);
}

#[test]
fn a_second_copy_with_the_prior_reads_only_the_changed_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = make_tree(dir.path());
    let p = Pair::new();
    let root1 = back_up(&p.src, &data);
    let (dst1, _, _) = p.rechunk(&root1, None);

    // Unchanged: the prior's root outright, nothing read.
    let (same, stats, _) = p.rechunk(&root1, Some((root1, dst1)));
    assert_eq!(same, dst1);
    assert_eq!((stats.files_read, stats.blobs_read, stats.bytes_read), (0, 0, 0));

    let changed = data.join("sub/deeper/b.txt");
    std::fs::write(&changed, noise(310_000, 17)).unwrap();
    let root2 = back_up(&p.src, &data);
    let (dst2, stats, _) = p.rechunk(&root2, Some((root1, dst1)));
    let src_nodes = p.assert_same(&root2, &dst2);

    let b = &src_nodes[&changed];
    assert_eq!(stats.files_read, 1);
    assert_eq!(stats.blobs_read, b.content.len() as u64);
    // other/ did not change: its tree was taken whole, its file not visited.
    assert_eq!(stats.subtrees_reused, 1);
    let other_dir = data.join("other");
    let in_other = src_nodes
        .keys()
        .filter(|k| k.starts_with(&other_dir) && **k != other_dir)
        .count() as u64;
    assert_eq!(in_other, 1);
    assert_eq!(stats.files_reused, non_empty_files(&src_nodes) - 1 - in_other);
    let di = p.dst.load_index().unwrap();
    let other = |root: &TreeId| {
        resolve_path(&p.dst, &di, root, data.join("other"))
            .unwrap()
            .unwrap()
            .subtree
    };
    assert_eq!(other(&dst1), other(&dst2));
}

#[test]
fn a_damaged_or_missing_source_blob_fails_naming_the_file_and_the_blob() {
    let dir = tempfile::tempdir().unwrap();
    let data = make_tree(dir.path());
    let p = Pair::new();
    let root = back_up(&p.src, &data);
    let index = p.src.load_index().unwrap();
    let big_path = data.join("big.bin");
    let big = resolve_path(&p.src, &index, &root, &big_path).unwrap().unwrap();
    let victim = big.content[big.content.len() / 2].id;
    let loc = index.get(&victim).unwrap();

    // Missing: an index without the pack holding it.
    let files: Vec<IndexFile> = p
        .src
        .load_index_files()
        .unwrap()
        .into_iter()
        .map(|o| {
            let mut f = o.file.unwrap();
            f.packs.retain(|pk| pk.id != loc.pack);
            f
        })
        .collect();
    let without = Index::from_files(files).unwrap();
    let check = |r: Result<(TreeId, RechunkStats, u64), RechunkError>, missing: bool| match r {
        Err(e @ RechunkError::Content { .. }) => {
            let msg = e.to_string();
            let RechunkError::Content { path, blob, .. } = e else {
                unreachable!()
            };
            assert!(
                path == big_path || path == Path::new("/zz-object"),
                "{}",
                path.display()
            );
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains(&blob.to_string()),
                "{msg}"
            );
            if missing {
                // The first of big.bin's blobs in that pack is the one named.
                assert!(big.content.iter().any(|c| c.id == blob));
                assert!(msg.contains("not in the index"), "{msg}");
            } else {
                assert_eq!(blob, victim);
            }
        }
        other => panic!("expected a content error, got {:?}", other.map(|r| r.1)),
    };
    check(p.rechunk_with(&without, &root, None), true);

    // Damaged: one byte of the blob flipped in its pack.
    let name = loc.pack.to_hex();
    p.src_backend.tamper(pack_kind(loc.blob_type), &name, |bytes| {
        bytes[loc.offset as usize + loc.length as usize / 2] ^= 0x40;
    });
    check(p.rechunk_with(&index, &root, None), false);
}

#[test]
fn a_damaged_source_tree_fails_naming_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = make_tree(dir.path());
    let p = Pair::new();
    let root = back_up(&p.src, &data);
    let index = p.src.load_index().unwrap();
    let sub = resolve_path(&p.src, &index, &root, data.join("sub"))
        .unwrap()
        .unwrap()
        .subtree
        .unwrap();
    let loc = index.get(&sub.blob()).unwrap();
    p.src_backend
        .tamper(pack_kind(loc.blob_type), &loc.pack.to_hex(), |bytes| {
            bytes[loc.offset as usize + 1] ^= 1;
        });
    match p.rechunk_with(&index, &root, None) {
        Err(RechunkError::Tree { path, tree, .. }) => {
            assert_eq!(path, data.join("sub"));
            assert_eq!(tree, sub);
        }
        other => panic!("expected a tree error, got {:?}", other.map(|r| r.1)),
    }
}

#[test]
fn a_cancelled_saver_stops_the_rechunking() {
    let dir = tempfile::tempdir().unwrap();
    let data = make_tree(dir.path());
    let p = Pair::new();
    let root = back_up(&p.src, &data);
    let src_index = p.src.load_index().unwrap();
    let dst_index = p.dst.load_index().unwrap();
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let saver = Saver::start_cancellable(&p.dst, Arc::new(Index::new()), 1, Some(cancel));
    let r = rechunk_tree(
        &p.src,
        &src_index,
        &p.dst,
        &dst_index,
        &saver,
        &DST_PARAMS,
        &root,
        None,
        &|_| {},
        None,
    );
    assert!(matches!(r, Err(RechunkError::Save(_))), "{:?}", r.map(|r| r.1));
    assert!(saver.finish().is_err());
    // Nothing of it was stored.
    assert!(p.dst.load_index().unwrap().is_empty());
}

/// Blobs near one another in a pack are read with one request; blobs of
/// other packs, far apart, or past 4 MiB are not.
#[test]
fn runs_join_nearby_blobs_of_one_pack_in_any_order() {
    use crate::blob::BlobType;
    use crate::id::{BlobId, PackId};
    use crate::index::{IndexBlob, IndexPack};
    use crate::tree::ContentRef;
    let id = |i: u8| BlobId::from_hex(&format!("{i:02x}").repeat(32)).unwrap();
    // (blob, pack, offset, length)
    let layout: [(u8, u8, u32, u32); 9] = [
        (0, 0, 0, 1000),
        (1, 0, 2000, 1000), // stored after blob 2 (parallel sealers)
        (2, 0, 1000, 1000),
        (3, 1, 0, 1000), // another pack
        (4, 1, 1000, 1000),
        (5, 1, 2_000_000, 1000), // 2 MB past blob 4: other files' bytes between
        (6, 1, 2_001_000, 3 << 20),
        (7, 1, (3 << 20) + 2_001_000, 2 << 20), // would pass 4 MiB
        (8, 1, 1000, 1000),                     // blob 4's place again, after the big ones
    ];
    let mut index = Index::new();
    for pack in 0..2u8 {
        let blobs = layout
            .iter()
            .filter(|b| b.1 == pack)
            .map(|&(b, _, offset, length)| IndexBlob {
                id: id(b),
                offset,
                length,
                raw_length: length,
            })
            .collect();
        index
            .add_pack(&IndexPack {
                id: PackId::from_hex(&format!("{:02x}", pack + 0x80).repeat(32)).unwrap(),
                blob_type: BlobType::Data,
                size: 8 << 20,
                blobs,
            })
            .unwrap();
    }
    let content: Vec<ContentRef> = layout
        .iter()
        .map(|&(b, ..)| ContentRef { id: id(b), length: 1 })
        .collect();
    let runs = super::rechunk::read::plan_runs(&index, Path::new("/f"), &content).unwrap();
    let groups: Vec<usize> = runs.iter().map(|r| r.locs.len()).collect();
    assert_eq!(groups, [3, 2, 2, 1, 1]);
    let missing = [ContentRef { id: id(99), length: 1 }];
    match super::rechunk::read::plan_runs(&index, Path::new("/f"), &missing) {
        Err(RechunkError::Content { blob, .. }) => assert_eq!(blob, id(99)),
        other => panic!("expected a missing blob, got {}", other.map(|r| r.len()).unwrap_or(0)),
    }
}
