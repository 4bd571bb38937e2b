//! A bucket as the backup source (`backup --s3-source`) and restores into a
//! bucket (`restore --to-s3`): SeaweedFS for objects with nested keys,
//! content types and user metadata (and refused credentials), moto for
//! versions. The repository itself is local. The buckets are made fresh per
//! test, and objects are put and read back with the engine's plain test
//! client (`cairn_engine::TestBucket`), not through the code under test.

use std::collections::HashMap;
use std::path::Path;

use cairn_engine::{TestBucket, TestObject};
use cairn_test_support::s3::{moto, seaweed, unique, Server};
use serde_json::Value;

use super::*;

/// A fresh bucket on `server` with its credentials in a file in `dir`;
/// returns the client, the bucket's `s3:` location and the credentials file.
fn fresh_bucket(server: &Server, dir: &Path, test: &str) -> (TestBucket, String, std::path::PathBuf) {
    let id = unique(test);
    let hex = id.rsplit('-').next().expect("unique ends in hex");
    let location = format!("s3:{}/cairn-src-{hex}", server.endpoint.trim_end_matches('/'));
    let creds = dir.join(format!("src-{hex}.cred"));
    server.write_credentials(&creds);
    let b = TestBucket::open(&location, &creds).expect("opening the test bucket");
    b.create().unwrap_or_else(|e| panic!("creating {location}: {e}"));
    (b, location, creds)
}

/// What a test puts: key, body, content type, user metadata.
struct Put {
    key: &'static str,
    body: Vec<u8>,
    content_type: &'static str,
    meta: Vec<(&'static str, &'static str)>,
}

impl Put {
    fn expected(&self) -> TestObject {
        TestObject {
            body: self.body.clone(),
            content_type: Some(self.content_type.to_string()),
            metadata: self.meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }
}

fn bucket_name(location: &str) -> &str {
    location.rsplit('/').next().expect("a bucket in the location")
}

/// `cairn` for the fixture's (local) repository with the source's credentials.
fn cairn_src(f: &Fixture, creds: &Path) -> Cairn {
    let mut c = f.cairn();
    c.env("CAIRN_S3_SOURCE_CREDENTIALS_FILE", creds);
    c
}

/// Asserts that no file below `root` carries a `cairn.*` extended attribute
/// under any namespace (they are the source's metadata, never set on files).
fn assert_no_cairn_xattrs(root: &Path) {
    for (rel, _) in regular_files(root) {
        let path = root.join(rel);
        let names: Vec<String> = xattr::list(&path)
            .unwrap_or_else(|e| panic!("listing xattrs of {}: {e}", path.display()))
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.contains("cairn.")),
            "{} has {names:?}",
            path.display()
        );
    }
}

#[test]
fn s3_source_seaweedfs_backup_reads_only_changes_and_restores_into_bucket_and_folder() {
    let Some(sw) = seaweed() else { return };
    let f = Fixture::init();
    let (bucket, location, creds) = fresh_bucket(&sw, &f.root, "src");
    let name = bucket_name(&location).to_string();
    let mut rng = Rng::new(11);
    let mut objects = vec![
        Put {
            key: "docs/readme.txt",
            body: b"read me first\n".to_vec(),
            content_type: "text/plain",
            meta: vec![("author", "alice")],
        },
        Put {
            key: "docs/deep/nested/data.bin",
            body: rng.bytes(3_000_000),
            content_type: "application/octet-stream",
            meta: vec![],
        },
        Put {
            key: "images/logo.png",
            body: rng.bytes(70_000),
            content_type: "image/png",
            meta: vec![("owner", "team-a"), ("note", "drawn by hand")],
        },
        // Above restore's part size: goes back as a multipart upload.
        Put {
            key: "big/large.bin",
            body: rng.bytes(10_000_000),
            content_type: "application/x-big",
            meta: vec![("kind", "large")],
        },
    ];
    for o in &objects {
        bucket.put(o.key, &o.body, Some(o.content_type), &o.meta).expect("put");
    }
    let total: u64 = objects.iter().map(|o| o.body.len() as u64).sum();

    let first = cairn_src(&f, &creds).args(["backup", "--s3-source", &location]).json();
    assert_eq!(u64_at(&first, "/summary/files_new"), 4, "{first:#}");
    assert_eq!(u64_at(&first, "/summary/bytes_read"), total, "{first:#}");
    assert_eq!(u64_at(&first, "/summary/errors"), 0, "{first:#}");
    let snaps = f.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(str_at(&snaps[0], "/paths/0"), format!("/{name}"), "{:#}", snaps[0]);
    assert_eq!(
        snaps[0]["details"]["S3"]["url"].as_str(),
        Some(location.as_str()),
        "{:#}",
        snaps[0]
    );
    assert_eq!(snaps[0]["details"]["S3"]["objects"].as_u64(), Some(4), "{:#}", snaps[0]);

    // One object changed, one added: only those two are read.
    objects[0].body = b"read me first, then the rest\n".to_vec();
    bucket
        .put(objects[0].key, &objects[0].body, Some("text/plain"), &objects[0].meta)
        .expect("put");
    let added = Put {
        key: "docs/new.txt",
        body: b"new today\n".to_vec(),
        content_type: "text/markdown",
        meta: vec![("day", "2")],
    };
    bucket
        .put(added.key, &added.body, Some(added.content_type), &added.meta)
        .expect("put");
    let second = cairn_src(&f, &creds).args(["backup", "--s3-source", &location]).json();
    assert_eq!(str_at(&second, "/parent"), str_at(&first, "/snapshot_id"), "{second:#}");
    assert_eq!(u64_at(&second, "/summary/files_changed"), 1, "{second:#}");
    assert_eq!(u64_at(&second, "/summary/files_new"), 1, "{second:#}");
    assert_eq!(u64_at(&second, "/summary/files_unchanged"), 3, "{second:#}");
    assert_eq!(
        u64_at(&second, "/summary/bytes_read"),
        (objects[0].body.len() + added.body.len()) as u64,
        "{second:#}"
    );
    objects.push(added);

    // Nothing changed: nothing read.
    let third = cairn_src(&f, &creds).args(["backup", "--s3-source", &location]).json();
    assert_eq!(u64_at(&third, "/summary/files_unchanged"), 5, "{third:#}");
    assert_eq!(u64_at(&third, "/summary/bytes_read"), 0, "{third:#}");
    assert_eq!(u64_at(&third, "/summary/data_blobs_added"), 0, "{third:#}");

    // "File deleted permanently": put back from the backup.
    let logo = &objects[2];
    bucket.delete(logo.key).expect("delete");
    assert!(!bucket.exists(logo.key).expect("head"));
    let one = cairn_src(&f, &creds)
        .args(["restore", &format!("latest:/{name}/{}", logo.key), "--to-s3", &location])
        .json();
    assert_eq!(u64_at(&one, "/summary/objects"), 1, "{one:#}");
    assert_eq!(bucket.get(logo.key, None).expect("get"), logo.expected());

    // The whole snapshot into a prefix: every object as it was.
    let restored = format!("{location}/restored");
    let all = cairn_src(&f, &creds)
        .args(["restore", "latest", "--to-s3", &restored])
        .json();
    assert_eq!(u64_at(&all, "/summary/objects"), objects.len() as u64, "{all:#}");
    assert!(
        all["summary"]["failed"].as_array().is_some_and(|v| v.is_empty()),
        "{all:#}"
    );
    for o in &objects {
        let got = bucket.get(&format!("restored/{}", o.key), None).expect("get");
        assert_eq!(got, o.expected(), "{}", o.key);
    }

    // Into a folder: identical files, and no cairn.* attributes on them.
    let dir = f.path("restored");
    f.cairn().args(["restore", "latest", "--target", &s(&dir)]).ok();
    let files = regular_files(&dir);
    assert_eq!(files.len(), objects.len(), "{files:?}");
    for o in &objects {
        let p = dir.join(&name).join(o.key);
        assert_eq!(fs::read(&p).expect("restored file"), o.body, "{}", p.display());
    }
    assert_no_cairn_xattrs(&dir);
}

/// The tree node at `path` of the latest snapshot, as `cat tree` prints it.
fn snapshot_node(f: &Fixture, path: &str) -> Value {
    let snap = f.cairn().args(["cat", "snapshot", "latest"]).ok().json();
    let mut tree = str_at(&snap, "/snapshot/tree").to_string();
    let names: Vec<&str> = path.split('/').filter(|n| !n.is_empty()).collect();
    for (i, name) in names.iter().enumerate() {
        let t = f.cairn().args(["cat", "tree", &tree]).ok().json();
        let node = t["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| bytes_of(&n["name"]) == name.as_bytes())
            .unwrap_or_else(|| panic!("{name} not in the tree of {path}: {t:#}"))
            .clone();
        if i + 1 == names.len() {
            return node;
        }
        tree = node["subtree"].as_str().expect("a folder").to_string();
    }
    panic!("empty path")
}

fn bytes_of(v: &Value) -> Vec<u8> {
    v.as_array()
        .expect("bytes")
        .iter()
        .map(|b| b.as_u64().expect("a byte") as u8)
        .collect()
}

/// A node's extended attributes as text, in stored order.
fn xattrs_of(node: &Value) -> Vec<(String, String)> {
    node["xattrs"]
        .as_array()
        .expect("xattrs")
        .iter()
        .map(|x| {
            (
                String::from_utf8(bytes_of(&x["name"])).expect("utf-8"),
                String::from_utf8(bytes_of(&x["value"])).expect("utf-8"),
            )
        })
        .collect()
}

#[test]
fn s3_source_moto_versions_come_back_distinctly() {
    let Some(m) = moto() else { return };
    let f = Fixture::init();
    let (bucket, location, creds) = fresh_bucket(&m, &f.root, "versions");
    let name = bucket_name(&location).to_string();
    bucket.enable_versioning().expect("versioning");
    let v1 = bucket
        .put("v/key.txt", b"first version\n", Some("text/plain"), &[("rev", "1")])
        .expect("put")
        .expect("a version id");
    let v2 = bucket
        .put("v/key.txt", b"second version\n", Some("text/plain"), &[("rev", "2")])
        .expect("put")
        .expect("a version id");
    assert_ne!(v1, v2);
    let gone = bucket
        .put("v/gone.txt", b"deleted later\n", Some("text/plain"), &[])
        .expect("put")
        .expect("a version id");
    bucket.delete("v/gone.txt").expect("delete (a delete marker)");

    // The source's credentials from cairn.toml's [s3-source] table.
    write(
        &f.user_config(),
        format!(
            "[s3-source]\nregion = \"us-east-1\"\ncredentials-file = \"{}\"\n",
            s(&creds)
        ),
    );
    let out = f
        .cairn()
        .args(["backup", "--s3-source", &location, "--versions"])
        .json();
    assert_eq!(u64_at(&out, "/summary/files_new"), 3, "{out:#}");
    let snaps = f.snapshots();
    assert_eq!(
        snaps[0]["details"]["S3"]["versions"].as_bool(),
        Some(true),
        "{:#}",
        snaps[0]
    );
    assert_eq!(snaps[0]["details"]["S3"]["objects"].as_u64(), Some(3), "{:#}", snaps[0]);

    // The source's metadata on the nodes, sorted by name (format-spec "Trees").
    let old = xattrs_of(&snapshot_node(&f, &format!("/{name}/v/key.txt.versions/{v1}")));
    let mut sorted = old.clone();
    sorted.sort();
    assert_eq!(old, sorted);
    let get = |x: &[(String, String)], k: &str| x.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get(&old, "cairn.s3.latest").as_deref(), Some("0"), "{old:?}");
    assert_eq!(get(&old, "cairn.s3.version-id"), Some(v1.clone()), "{old:?}");
    assert_eq!(get(&old, "cairn.s3.meta.rev").as_deref(), Some("1"), "{old:?}");
    assert_eq!(
        get(&old, "cairn.s3.content-type").as_deref(),
        Some("text/plain"),
        "{old:?}"
    );
    assert!(
        get(&old, "cairn.s3.etag").is_some_and(|e| !e.is_empty() && !e.contains('"')),
        "{old:?}"
    );
    let cur = xattrs_of(&snapshot_node(&f, &format!("/{name}/v/key.txt")));
    assert_eq!(get(&cur, "cairn.s3.latest").as_deref(), Some("1"), "{cur:?}");
    assert_eq!(get(&cur, "cairn.s3.version-id"), Some(v2.clone()), "{cur:?}");

    let dir = f.path("restored");
    f.cairn().args(["restore", "latest", "--target", &s(&dir)]).ok();
    let v = dir.join(&name).join("v");
    assert_eq!(fs::read(v.join("key.txt")).expect("current"), b"second version\n");
    assert_eq!(
        fs::read(v.join("key.txt.versions").join(&v1)).expect("older version"),
        b"first version\n"
    );
    assert_eq!(
        fs::read(v.join("gone.txt.versions").join(&gone)).expect("deleted key's version"),
        b"deleted later\n"
    );
    assert!(!v.join("gone.txt").exists(), "a deleted key has no current version");
    assert_no_cairn_xattrs(&dir);

    // One older version put back as the current object.
    let r = f
        .cairn()
        .args([
            "restore",
            &format!("latest:/{name}/v/key.txt.versions/{v1}"),
            "--to-s3",
            &location,
        ])
        .json();
    assert_eq!(u64_at(&r, "/summary/objects"), 1, "{r:#}");
    let now = bucket.get("v/key.txt", None).expect("get");
    assert_eq!(now.body, b"first version\n");
    assert_eq!(now.metadata, HashMap::from([("rev".to_string(), "1".to_string())]));

    // A folder's restore leaves the older versions out and says so.
    let r = f
        .cairn()
        .args([
            "restore",
            &format!("latest:/{name}/v"),
            "--to-s3",
            &format!("{location}/again"),
        ])
        .json();
    assert_eq!(u64_at(&r, "/summary/objects"), 1, "{r:#}");
    assert_eq!(u64_at(&r, "/summary/versions_left_out"), 2, "{r:#}");
    assert_eq!(
        bucket.get("again/v/key.txt", None).expect("get").body,
        b"second version\n"
    );
}

#[test]
fn s3_source_missing_bucket_or_wrong_credentials_fail_without_snapshot() {
    let Some(sw) = seaweed() else { return };
    let f = Fixture::init();
    let (bucket, location, creds) = fresh_bucket(&sw, &f.root, "refused");
    bucket.put("a.txt", b"a", Some("text/plain"), &[]).expect("put");

    let missing = format!("{}-missing", location);
    let r = cairn_src(&f, &creds).args(["backup", "--s3-source", &missing]).fails();
    assert!(r.stderr().contains("does not exist"), "{r}");

    let wrong = f.path("wrong.cred");
    write(&wrong, "aws_access_key_id=nobody\naws_secret_access_key=wrong-secret\n");
    chmod(&wrong, 0o600);
    let r = cairn_src(&f, &wrong).args(["backup", "--s3-source", &location]).fails();
    assert!(!r.stderr().contains("wrong-secret"), "the secret was printed: {r}");
    assert!(
        r.stderr().to_lowercase().contains("denied") || r.stderr().contains("403"),
        "{r}"
    );
    assert!(f.snapshots().is_empty(), "a failed backup left a snapshot");
}

#[test]
fn s3_source_keys_that_cannot_be_paths_are_left_out_with_a_warning() {
    let Some(m) = moto() else { return };
    let f = Fixture::init();
    let (bucket, location, creds) = fresh_bucket(&m, &f.root, "oddkeys");
    let name = bucket_name(&location).to_string();
    for key in ["ok.txt", "odd//double", "dots/../up", "folder/", "clash", "clash/inner"] {
        bucket.put(key, key.as_bytes(), Some("text/plain"), &[]).expect("put");
    }
    // A folder marker is empty.
    bucket.put("marker/", b"", None, &[]).expect("put");
    let r = cairn_src(&f, &creds)
        .args(["backup", "--json", "--s3-source", &location])
        .code(3);
    let out = r.json();
    let skipped: Vec<String> = out["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|k| k["path"].as_str().unwrap_or_default().to_string())
        .collect();
    for key in ["odd//double", "dots/../up", "folder/", "clash"] {
        assert!(
            skipped
                .iter()
                .any(|p| p.ends_with(key) || p.ends_with(key.trim_end_matches('/'))),
            "{key} not reported as skipped: {out:#}"
        );
    }
    assert!(!skipped.iter().any(|p| p.contains("marker")), "{out:#}");
    assert_eq!(u64_at(&out, "/summary/files_new"), 2, "{out:#}");
    let dir = f.path("restored");
    f.cairn().args(["restore", "latest", "--target", &s(&dir)]).ok();
    let files = regular_files(&dir);
    let want: Vec<std::path::PathBuf> = ["clash/inner", "ok.txt"]
        .iter()
        .map(|k| Path::new(&name).join(k))
        .collect();
    assert_eq!(files.keys().cloned().collect::<Vec<_>>(), want);
}
