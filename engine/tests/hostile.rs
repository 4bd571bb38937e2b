//! Hostile repositories, written through the `testing` APIs: an invalid tree
//! is refused by every reader before anything acts on it, and planted key
//! objects cannot stop or slow down opening.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_engine::blob::{self, Aad, BlobType, Compression};
use cairn_engine::crypto::KdfParams;
use cairn_engine::encoding;
use cairn_engine::pack::Packer;
use cairn_engine::{
    backup, restore, walk_snapshot, Backend, BackupOptions, BackupSource, ErrorKind, IndexFile, KeyFile, Node,
    NodeKind, ObjectId, ObjectKind, ParentChoice, Repository, RepositoryError, RestoreOptions, Tree, TreeId,
};
use cairn_engine::{LocalBackend, MemoryBackend};
use cairn_test_support::engine as support;

const PASSWORD: &[u8] = b"hostile-test-password";

/// Stores `tree` as a tree blob in a pack of its own, indexed, and returns
/// its id: what a writer holding the key can put in a repository.
fn plant_tree(repo: &Repository, backend: &dyn Backend, tree: &Tree) -> TreeId {
    let keys = repo.master_key().derive();
    let (id, bytes) = tree.encode_blob(&keys).unwrap();
    let sealed = blob::seal(
        &keys,
        Aad::Blob(BlobType::Tree, &id.blob()),
        &bytes,
        Compression { level: 0 },
    )
    .unwrap();
    let mut packer = Packer::new(BlobType::Tree, sealed.len());
    packer.add(id.blob(), &sealed, bytes.len()).unwrap();
    let pack = packer.finish(&keys).unwrap();
    backend
        .write(ObjectKind::TreePack, &pack.id.to_hex(), &pack.bytes)
        .unwrap();
    repo.save_index(&IndexFile {
        packs: vec![pack.index_entry()],
    })
    .unwrap();
    id
}

/// The attack: a tree holding a file `x` (mode 0777) and a symlink
/// `x` to a file outside the target. A restore that applied the file's mode
/// through the link would chmod the outside file; the tree must be refused
/// before that, by every reader, as damage.
#[test]
fn a_tree_with_a_file_and_a_symlink_of_the_same_name_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"some data").unwrap();
    let victim = work.path().join("victim");
    fs::write(&victim, b"not yours").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();

    let repo_dir = work.path().join("repo");
    let backend = Arc::new(LocalBackend::new(&repo_dir));
    let repo = Repository::init(backend.clone(), PASSWORD, support::cheap_init(support::CHUNKER)).unwrap();
    let opts = BackupOptions {
        parent: ParentChoice::None,
        ..Default::default()
    };
    let out = backup(&repo, BackupSource::Paths(vec![src]), &opts).unwrap();
    let good = repo.load_snapshot(&out.id.unwrap()).unwrap();

    let mut file = Node::new(b"x".to_vec(), NodeKind::File);
    file.mode = 0o777;
    let mut link = Node::new(b"x".to_vec(), NodeKind::Symlink);
    link.mode = 0o777;
    link.symlink_target = Some(victim.as_os_str().as_encoded_bytes().to_vec());
    let tree_id = plant_tree(
        &repo,
        backend.as_ref(),
        &Tree {
            nodes: vec![file, link],
        },
    );
    let mut hostile = good.clone();
    hostile.tree = tree_id;
    let snap_id = repo.save_snapshot(&hostile).unwrap();

    let repo = Repository::open(Arc::new(LocalBackend::new(&repo_dir)), PASSWORD).unwrap();
    let index = repo.load_index().unwrap();
    let e = repo.load_tree(&index, &tree_id).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Damaged, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("invalid tree {}", tree_id.short())) && msg.contains("two entries are named `x`"),
        "{msg}"
    );

    // ls (and every other reader) refuses it the same way.
    let snap = repo.load_snapshot(&snap_id).unwrap();
    let e = walk_snapshot(&repo, &index, &snap, "/", true, &mut |_, _| {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Damaged, "{e}");

    let target = work.path().join("target");
    let r = restore(&repo, &snap, &target, &RestoreOptions::default());
    let mode = fs::metadata(&victim).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "the restore changed a file outside its target");
    assert_eq!(fs::read(&victim).unwrap(), b"not yours");
    match r {
        Err(e) => assert!(e.to_string().contains("two entries are named `x`"), "{e}"),
        Ok(s) => panic!("restoring a snapshot whose root tree is invalid succeeded: {s:?}"),
    }
    // The good snapshot is untouched by the bad one.
    assert!(repo.load_tree(&index, &good.tree).is_ok());
}

/// A key object as an attacker with write access (and no password) can
/// plant one: any parameters, a random salt, garbage for the sealed key.
/// Returns its name; `nudge` varies its bytes (and so its name).
fn plant_key(backend: &dyn Backend, kdf: KdfParams, nudge: i64) -> String {
    let kf = KeyFile {
        created_ns: nudge,
        host: "attacker".into(),
        user: "mallory".into(),
        kdf,
        salt: vec![3; 32],
        sealed_master: vec![5; 72],
    };
    let bytes = encoding::encode("key", 1, &kf).unwrap();
    let name = ObjectId::of_bytes(&bytes).to_hex();
    backend.write(ObjectKind::Key, &name, &bytes).unwrap();
    name
}

/// Key objects beyond the KDF bounds (more than twice the default work, or
/// the 4 GiB × 64 passes format version 1 used to allow) are skipped as
/// damaged without running Argon2: the right password still opens at once,
/// and a wrong one counts only the usable keys.
#[test]
fn out_of_bound_key_objects_are_skipped_quickly_and_the_right_key_opens() {
    let backend = Arc::new(MemoryBackend::new());
    Repository::init(backend.clone(), PASSWORD, support::cheap_init(support::CHUNKER)).unwrap();
    let over = [
        // Just over twice the default's memory × passes (Argon2 would take
        // about as long as a default key, with 390 MiB).
        KdfParams {
            memory_kib: 400_000,
            iterations: 1,
            parallelism: 1,
        },
        KdfParams {
            memory_kib: 4 * 1024 * 1024,
            iterations: 64,
            parallelism: 1,
        },
    ];
    for (i, kdf) in over.into_iter().enumerate() {
        plant_key(backend.as_ref(), kdf, i as i64);
    }
    let started = Instant::now();
    let repo = Repository::open(backend.clone(), PASSWORD).unwrap();
    assert!(repo.key_name().is_some());
    match Repository::open(backend.clone(), b"wrong") {
        Err(RepositoryError::WrongPassword { keys }) => assert_eq!(keys, 1, "the planted keys are not usable"),
        other => panic!("expected a wrong password, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "opening ran Argon2 on a planted key ({took:?})"
    );
}

/// A planted key object within the bounds but as expensive as they allow
/// is tried after the cheaper right key, so it costs the right password
/// nothing, whatever its name.
#[test]
fn an_expensive_planted_key_is_not_run_before_a_cheaper_right_key() {
    let backend = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), PASSWORD, support::cheap_init(support::CHUNKER)).unwrap();
    let right = repo.key_name().unwrap().to_string();
    let dear = KdfParams {
        memory_kib: 128 * 1024,
        iterations: 3,
        parallelism: 1,
    };
    assert!(dear.check_bounds().is_ok());
    // A name that sorts before the right key's: listing order would try it first.
    let planted = (0..)
        .map(|n| plant_key(backend.as_ref(), dear, n))
        .find(|name| name < &right)
        .unwrap();
    for o in backend.list(ObjectKind::Key).unwrap() {
        if o.name != right && o.name != planted {
            backend.remove(ObjectKind::Key, &o.name).unwrap();
        }
    }
    assert_eq!(backend.list(ObjectKind::Key).unwrap().len(), 2);

    // What one run of Argon2 on the planted key costs here, now.
    let t = Instant::now();
    cairn_engine::crypto::derive_kek(b"x", &[3; 32], dear).unwrap();
    let one_run = t.elapsed();
    let t = Instant::now();
    let opened = Repository::open(backend.clone(), PASSWORD).unwrap();
    let open = t.elapsed();
    assert_eq!(opened.key_name(), Some(right.as_str()));
    assert!(
        open < one_run / 2,
        "opening took {open:?}, one Argon2 run of the planted key {one_run:?}: it was tried first"
    );
}
