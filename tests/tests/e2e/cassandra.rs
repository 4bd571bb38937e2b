//! `backup --cassandra`, `restore --cassandra-layout` and the backup hooks,
//! on a generated Cassandra data folder (no server needed): keyspaces with
//! tables `<name>-<32 hex id>`, SSTables of eight components, and two
//! snapshot tags made as `nodetool snapshot` makes them (hard links of the
//! live SSTables, plus a fresh `schema.cql` and `manifest.json`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

const COMPONENTS: [&str; 8] = [
    "Data.db",
    "Index.db",
    "Filter.db",
    "Statistics.db",
    "Summary.db",
    "TOC.txt",
    "CompressionInfo.db",
    "Digest.crc32",
];

/// One table folder: its live SSTable files by name.
struct Table {
    keyspace: String,
    name: String,
    id: String,
    dir: PathBuf,
    live: BTreeMap<String, Vec<u8>>,
}

/// Files of one tag folder, by name, and which of them are new since the
/// tag before (not hard links of files an earlier tag had).
#[derive(Default)]
struct TagFolder {
    files: BTreeMap<String, Vec<u8>>,
    new: Vec<String>,
}

struct Node {
    data: PathBuf,
    tables: Vec<Table>,
    rng: Rng,
    /// tag → (keyspace, table) → folder.
    tags: BTreeMap<String, BTreeMap<(String, String), TagFolder>>,
}

impl Node {
    fn new(data: PathBuf) -> Node {
        let mut n = Node {
            data,
            tables: Vec::new(),
            rng: Rng::new(11),
            tags: BTreeMap::new(),
        };
        for (ks, t) in [
            ("chat", "messages"),
            ("chat", "users"),
            ("billing", "invoices"),
            ("system", "local"),
            ("system_schema", "tables"),
        ] {
            let id = format!("{:016x}{:016x}", n.rng.next_u64(), n.rng.next_u64());
            let dir = n.data.join(ks).join(format!("{t}-{id}"));
            fs::create_dir_all(&dir).unwrap();
            n.tables.push(Table {
                keyspace: ks.into(),
                name: t.into(),
                id,
                dir,
                live: BTreeMap::new(),
            });
        }
        n
    }

    fn table(&self, ks: &str, t: &str) -> &Table {
        self.tables.iter().find(|x| x.keyspace == ks && x.name == t).unwrap()
    }

    /// Flushes one SSTable (all eight components, random sizes) into the
    /// live table folder.
    fn flush(&mut self, i: usize, generation: u32) {
        for c in COMPONENTS {
            let size = if c == "Data.db" {
                20_000 + (self.rng.next_u64() % 180_000) as usize
            } else {
                16 + (self.rng.next_u64() % 4_000) as usize
            };
            let bytes = self.rng.bytes(size);
            let name = format!("nb-{generation}-big-{c}");
            write(&self.tables[i].dir.join(&name), &bytes);
            self.tables[i].live.insert(name, bytes);
        }
    }

    /// `nodetool snapshot -t TAG`: hard-links every live SSTable of every
    /// table into `snapshots/TAG/` and writes the schema and manifest.
    fn snapshot(&mut self, tag: &str) {
        let mut folders = BTreeMap::new();
        for t in &self.tables {
            let dir = t.dir.join("snapshots").join(tag);
            fs::create_dir_all(&dir).unwrap();
            let mut f = TagFolder::default();
            let before = self
                .tags
                .values()
                .flat_map(|m| m.get(&(t.keyspace.clone(), t.name.clone())));
            let known: Vec<String> = before.flat_map(|b| b.files.keys().cloned()).collect();
            for (name, bytes) in &t.live {
                fs::hard_link(t.dir.join(name), dir.join(name)).unwrap();
                f.files.insert(name.clone(), bytes.clone());
                if !known.contains(name) {
                    f.new.push(name.clone());
                }
            }
            let schema = format!(
                "CREATE TABLE IF NOT EXISTS {}.{} (id uuid PRIMARY KEY, body text) WITH ID = {};\n-- {tag}\n",
                t.keyspace, t.name, t.id
            );
            let manifest = format!(
                "{{\"files\":[{}],\"created_at\":\"{tag}\"}}\n",
                t.live.keys().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(",")
            );
            for (name, bytes) in [
                ("schema.cql", schema.into_bytes()),
                ("manifest.json", manifest.into_bytes()),
            ] {
                write(&dir.join(name), &bytes);
                f.files.insert(name.into(), bytes);
                f.new.push(name.into());
            }
            folders.insert((t.keyspace.clone(), t.name.clone()), f);
        }
        self.tags.insert(tag.into(), folders);
    }

    fn folder(&self, tag: &str, ks: &str, t: &str) -> &TagFolder {
        &self.tags[tag][&(ks.to_string(), t.to_string())]
    }

    fn tag_dir(&self, tag: &str, ks: &str, t: &str) -> PathBuf {
        self.table(ks, t).dir.join("snapshots").join(tag)
    }
}

/// Every regular file under `dir`, by path relative to it.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn go(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                go(base, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(base).unwrap().to_string_lossy().into_owned(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    go(dir, dir, &mut out);
    out
}

/// `files` with every name put below `prefix/`.
fn below(prefix: &str, files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .map(|(k, v)| (format!("{prefix}/{k}"), v.clone()))
        .collect()
}

/// Two nights: tag `nightly-1` over generation 1 (and 2 for messages), then
/// new SSTables in two tables and tag `nightly-2`.
fn two_nights(f: &Fixture) -> Node {
    let mut node = Node::new(f.path("cassandra/data"));
    for i in 0..node.tables.len() {
        node.flush(i, 1);
    }
    node.flush(0, 2);
    node.snapshot("nightly-1");
    node.flush(0, 3);
    node.flush(2, 2);
    node.snapshot("nightly-2");
    node
}

fn cassandra_backup(f: &Fixture, node: &Node, tag: &str, more: &[&str]) -> Value {
    f.cairn()
        .args(["backup", "--host", "cass-node-1", "--cassandra"])
        .arg(&node.data)
        .args(["--snapshot-tag", tag])
        .args(more)
        .json()
}

fn tables_of(out: &Value) -> u64 {
    u64_at(out, "/cassandra/tables")
}

#[test]
fn cassandra_nightly_backups_read_only_new_sstables_and_restore_in_both_layouts() {
    let f = Fixture::init();
    let node = two_nights(&f);
    let data = s(&node.data);
    let user_tables = [("chat", "messages"), ("chat", "users"), ("billing", "invoices")];

    // Night 1: every user table's tag folder; system keyspaces left out.
    let one = cassandra_backup(&f, &node, "nightly-1", &[]);
    assert_eq!(tables_of(&one), 3, "{one:#}");
    assert_eq!(
        strings_at(&one, "/paths"),
        vec![data.clone()],
        "the snapshot's paths are the data folder"
    );
    let written: u64 = user_tables
        .iter()
        .flat_map(|(k, t)| node.folder("nightly-1", k, t).files.values())
        .map(|b| b.len() as u64)
        .sum();
    assert_eq!(u64_at(&one, "/summary/bytes_read"), written, "night 1 reads everything");

    // Night 2: the parent is night 1 although every path differs, and only
    // the new SSTables (and the new schema/manifest files) are read.
    let two = cassandra_backup(&f, &node, "nightly-2", &[]);
    assert_eq!(str_at(&two, "/parent"), str_at(&one, "/snapshot_id"));
    let (mut new_bytes, mut old_files, mut old_bytes) = (0u64, 0u64, 0u64);
    for (k, t) in user_tables {
        let folder = node.folder("nightly-2", k, t);
        for (name, bytes) in &folder.files {
            if folder.new.contains(name) {
                new_bytes += bytes.len() as u64;
            } else {
                old_files += 1;
                old_bytes += bytes.len() as u64;
            }
        }
    }
    assert!(old_files >= 32 && new_bytes > 0, "the data has both kinds");
    assert_eq!(u64_at(&two, "/summary/bytes_read"), new_bytes, "{two:#}");
    assert_eq!(u64_at(&two, "/cassandra/unchanged_files_not_read"), old_files);
    assert_eq!(u64_at(&two, "/cassandra/unchanged_bytes_not_read"), old_bytes);
    // The text summary says the same (a dry run against night 1 again).
    let text = f
        .cairn()
        .args([
            "backup",
            "--host",
            "cass-node-1",
            "--dry-run",
            "--cassandra",
            &data,
            "--snapshot-tag",
            "nightly-2",
        ])
        .args(["--parent", str_at(&one, "/snapshot_id")])
        .ok()
        .stdout();
    assert!(text.contains(&format!("not read: {old_files} files")), "{text}");

    // The snapshot's details list each table with what was written.
    let snaps = f.snapshots();
    let last = snaps.last().unwrap();
    assert_eq!(str_at(last, "/source"), "cassandra");
    assert_eq!(str_at(last, "/details/Cassandra/tag"), "nightly-2");
    let tables = last
        .pointer("/details/Cassandra/tables")
        .and_then(Value::as_array)
        .unwrap();
    assert_eq!(tables.len(), 3);
    for t in tables {
        let (k, name) = (str_at(t, "/keyspace"), str_at(t, "/table"));
        let folder = node.folder("nightly-2", k, name);
        assert_eq!(str_at(t, "/table_id"), node.table(k, name).id);
        assert_eq!(str_at(t, "/path"), s(&node.tag_dir("nightly-2", k, name)));
        assert_eq!(u64_at(t, "/files"), folder.files.len() as u64);
        assert_eq!(
            u64_at(t, "/bytes"),
            folder.files.values().map(|b| b.len() as u64).sum::<u64>()
        );
    }

    // Filters, and the system keyspaces on request (dry runs).
    let dry = |more: &[&str]| cassandra_backup(&f, &node, "nightly-2", &[&["--dry-run"], more].concat());
    assert_eq!(tables_of(&dry(&["--include-system"])), 5);
    assert_eq!(tables_of(&dry(&["--keyspace", "chat"])), 2);
    assert_eq!(tables_of(&dry(&["--table", "billing.invoices"])), 1);
    assert_eq!(tables_of(&dry(&["--keyspace", "chat", "--table", "users"])), 1);

    // One table, `nodetool refresh` layout: <ks>/<table>-<id>/, no snapshots/<TAG>.
    let msg = node.table("chat", "messages");
    let t1 = f.path("restore-table");
    f.cairn()
        .args([
            "restore",
            "latest",
            "--cassandra-layout",
            "refresh",
            "--keyspace",
            "chat",
            "--table",
            "messages",
        ])
        .arg("--target")
        .arg(&t1)
        .ok();
    let want = below(
        &format!("chat/messages-{}", msg.id),
        &node.folder("nightly-2", "chat", "messages").files,
    );
    assert_eq!(
        files_under(&t1),
        want,
        "the table's files, byte for byte, without snapshots/<TAG>"
    );

    // One SSTable: all eight components of nb-1, nothing else.
    let t2 = f.path("restore-sstable");
    let data_db = node.tag_dir("nightly-2", "chat", "messages").join("nb-1-big-Data.db");
    f.cairn()
        .args([
            "restore",
            &format!("latest:{}", s(&data_db)),
            "--cassandra-layout",
            "refresh",
        ])
        .arg("--target")
        .arg(&t2)
        .ok();
    let got = files_under(&t2);
    let want: BTreeMap<String, Vec<u8>> = node
        .folder("nightly-2", "chat", "messages")
        .files
        .iter()
        .filter(|(k, _)| k.starts_with("nb-1-big-"))
        .map(|(k, v)| (format!("chat/messages-{}/{k}", msg.id), v.clone()))
        .collect();
    assert_eq!(want.len(), 8);
    assert_eq!(got, want);

    // A keyspace, `sstableloader` layout: <ks>/<table>/.
    let t3 = f.path("restore-loader");
    f.cairn()
        .args([
            "restore",
            "latest",
            "--cassandra-layout",
            "sstableloader",
            "--keyspace",
            "chat",
        ])
        .arg("--target")
        .arg(&t3)
        .ok();
    let mut want = below("chat/messages", &node.folder("nightly-2", "chat", "messages").files);
    want.extend(below("chat/users", &node.folder("nightly-2", "chat", "users").files));
    assert_eq!(files_under(&t3), want);

    // A plain snapshot cannot be laid out for Cassandra.
    write(&f.path("plain/a.txt"), "a");
    f.cairn().args(["backup", "--json"]).arg(f.path("plain")).ok();
    let r = f
        .cairn()
        .args(["restore", "latest", "--cassandra-layout", "refresh", "--target"])
        .arg(f.path("restore-plain"))
        .fails();
    assert!(r.stderr().contains("--cassandra"), "{r}");
    assert!(!f.path("restore-plain/a.txt").exists());
}

#[test]
fn cassandra_hooks_and_clear_errors() {
    let f = Fixture::init();
    let node = two_nights(&f);
    let data = s(&node.data);

    // An unknown tag: the data folder searched and the tags there are named.
    let r = f
        .cairn()
        .args(["backup", "--cassandra", &data, "--snapshot-tag", "weekly-9"])
        .fails();
    let err = r.stderr();
    assert!(
        err.contains("weekly-9") && err.contains(&data) && err.contains("nightly-1, nightly-2"),
        "{r}"
    );
    // A data folder that does not exist.
    let r = f
        .cairn()
        .args(["backup", "--cassandra", &data, "--cassandra"])
        .arg(f.path("no-such-data"))
        .args(["--snapshot-tag", "nightly-1"])
        .fails();
    assert!(r.stderr().contains("no-such-data"), "{r}");

    // A failing pre-command: no snapshot, and the post-command still runs.
    let marker = f.path("post-ran");
    let r = f
        .cairn()
        .args([
            "backup",
            "--cassandra",
            &data,
            "--snapshot-tag",
            "nightly-1",
            "--pre-command",
            "exit 4",
        ])
        .arg("--post-command")
        .arg(format!("echo \"$CAIRN_BACKUP_RESULT\" > '{}'", s(&marker)))
        .fails();
    assert!(r.stderr().contains("pre-command"), "{r}");
    assert!(f.snapshots().is_empty(), "no snapshot after a failing pre-command");
    assert_eq!(fs::read_to_string(&marker).unwrap().trim(), "pre-command-failed");

    // The pre-command makes the tag (as `nodetool snapshot -t` would), the
    // backup finds it, the post-command clears it; the backup's CAIRN_*
    // variables do not reach them.
    let users = node.table("chat", "users");
    let tag_dir = users.dir.join("snapshots/hooked");
    let pre = format!(
        "test -z \"$CAIRN_PASSWORD_FILE\" && mkdir -p '{0}' && ln '{1}'/nb-1-big-* '{0}'/",
        s(&tag_dir),
        s(&users.dir)
    );
    let out = f
        .cairn()
        .args([
            "backup",
            "--cassandra",
            &data,
            "--snapshot-tag",
            "hooked",
            "--pre-command",
            &pre,
        ])
        .arg("--post-command")
        .arg(format!(
            "rm -r '{}' && echo \"$CAIRN_BACKUP_RESULT\" > '{}'",
            s(&tag_dir),
            s(&marker)
        ))
        .json();
    assert_eq!(tables_of(&out), 1);
    assert!(!tag_dir.exists(), "the post-command ran");
    assert_eq!(fs::read_to_string(&marker).unwrap().trim(), "success");
    let restored = f.path("hooked-restore");
    f.cairn()
        .args(["restore", "latest", "--cassandra-layout", "refresh", "--target"])
        .arg(&restored)
        .ok();
    let want: BTreeMap<String, Vec<u8>> = users
        .live
        .iter()
        .filter(|(k, _)| k.starts_with("nb-1-big-"))
        .map(|(k, v)| (format!("chat/users-{}/{k}", users.id), v.clone()))
        .collect();
    assert_eq!(files_under(&restored), want);

    // A node with two data folders: the same table's SSTables in both are
    // restored into one table folder (schema and manifest from the first).
    let msg = node.table("chat", "messages");
    let data2 = f.path("cassandra/data2");
    let second = data2.join(format!("chat/messages-{}/snapshots/nightly-2", msg.id));
    let mut want = below(
        &format!("chat/messages-{}", msg.id),
        &node.folder("nightly-2", "chat", "messages").files,
    );
    let mut rng = Rng::new(5);
    for c in ["Data.db", "Index.db", "TOC.txt", "schema.cql"] {
        let name = if c == "schema.cql" {
            c.to_string()
        } else {
            format!("nb-7-big-{c}")
        };
        let bytes = rng.bytes(3000);
        write(&second.join(&name), &bytes);
        want.entry(format!("chat/messages-{}/{name}", msg.id)).or_insert(bytes);
    }
    let out = f
        .cairn()
        .args([
            "backup",
            "--cassandra",
            &data,
            "--cassandra",
            &s(&data2),
            "--snapshot-tag",
            "nightly-2",
        ])
        .args(["--table", "chat.messages"])
        .json();
    assert_eq!(tables_of(&out), 2);
    assert_eq!(strings_at(&out, "/paths"), vec![data.clone(), s(&data2)]);
    let merged = f.path("two-dirs-restore");
    f.cairn()
        .args(["restore", "latest", "--cassandra-layout", "refresh", "--target"])
        .arg(&merged)
        .ok();
    assert_eq!(files_under(&merged), want);

    // A failing post-command after a saved snapshot: reported, non-zero, snapshot kept.
    let before = f.snapshots().len();
    let r = f
        .cairn()
        .args([
            "backup",
            "--cassandra",
            &data,
            "--snapshot-tag",
            "nightly-1",
            "--post-command",
            "exit 5",
        ])
        .fails();
    assert!(r.stderr().contains("post-command"), "{r}");
    assert_eq!(f.snapshots().len(), before + 1, "the snapshot is kept");
}
