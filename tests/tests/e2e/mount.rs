//! `cairn mount` through a real FUSE mount: the mounted snapshot against
//! its source and a restore, random-offset and parallel reads, snapshots
//! appearing while mounted, and a clean end on Ctrl-C (also while busy).
//! Where /dev/fuse is missing the tests say so loudly, and fail under CI.

use std::fs;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::*;

/// Whether a FUSE mount can be made here; if not, fails under CI and says
/// so loudly otherwise.
pub fn fuse_available(test: &str) -> bool {
    let helper = Command::new("fusermount3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let ok = Path::new("/dev/fuse").exists() && (is_root() || helper);
    if !ok {
        let msg = "FUSE is not usable here: /dev/fuse is missing, or (not root) fusermount3 \
                   (Debian package fuse3, which scripts/platform-tools.sh installs)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: {msg}");
        }
        eprintln!("\n*** SKIPPED: {test}: {msg} ***\n");
    }
    ok
}

/// Whether `at` is a mount point now.
fn is_mounted(at: &Path) -> bool {
    let at = at.canonicalize().unwrap_or_else(|_| at.to_path_buf());
    fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(&*s(&at)))
}

/// A running `cairn mount`; unmounted and killed if the test fails.
pub struct Mount {
    child: Option<Child>,
    /// The mount point.
    pub at: PathBuf,
    lines: mpsc::Receiver<String>,
    /// Standard error so far.
    pub stderr: Vec<String>,
}

impl Mount {
    /// Starts `cairn mount AT` and waits until the snapshots folder is there.
    pub fn start(f: &Fixture, at: &Path) -> Mount {
        fs::create_dir_all(at).expect("mount point");
        let mut child = f.cairn().args(["mount", &s(at)]).spawn();
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut m = Mount {
            child: Some(child),
            at: at.to_path_buf(),
            lines,
            stderr: Vec::new(),
        };
        let start = Instant::now();
        while !at.join("snapshots").is_dir() {
            if let Some(Ok(Some(st))) = m.child.as_mut().map(Child::try_wait) {
                m.drain();
                panic!("cairn mount ended ({st}) before mounting:\n{}", m.stderr.join("\n"));
            }
            assert!(start.elapsed() < Duration::from_secs(30), "not mounted after 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.stderr.push(l);
        }
    }

    /// Waits up to 20 s for a line of standard error containing `needle`.
    pub fn wait_for(&mut self, needle: &str) -> bool {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if self.stderr.iter().any(|l| l.contains(needle)) {
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.stderr.push(l),
                Err(_) => return false,
            }
        }
    }

    /// Sends SIGINT (Ctrl-C).
    pub fn interrupt(&self) {
        let pid = self.child.as_ref().expect("running").id();
        kill(Pid::from_raw(pid as i32), Signal::SIGINT).expect("SIGINT");
    }

    /// Ctrl-C, then waits up to 20 s for the process to end.
    pub fn stop(self) -> (ExitStatus, Vec<String>) {
        self.interrupt();
        self.wait()
    }

    /// Unmounts from outside (`umount`, or the helper when not root), as a
    /// user in another terminal would; then waits for the process to end.
    pub fn unmount_from_outside(self) -> (ExitStatus, Vec<String>) {
        let (cmd, args) = if is_root() {
            ("umount", vec![])
        } else {
            ("fusermount3", vec!["-u"])
        };
        let out = Command::new(cmd)
            .args(args)
            .arg(&self.at)
            .output()
            .expect("running umount");
        assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
        self.wait()
    }

    /// Waits up to 20 s for the process to end.
    fn wait(mut self) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait") {
                break st;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "cairn mount still running 20 s after Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        self.drain();
        // The reader thread ends with the process: take its last lines.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.stderr.push(l);
        }
        (status, std::mem::take(&mut self.stderr))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            // A killed mount stays as a dead mount point until unmounted
            // (umount as root, the helper otherwise).
            let umounted = Command::new("umount").arg("-l").arg(&self.at).output();
            if !umounted.is_ok_and(|o| o.status.success()) {
                let _ = Command::new("fusermount3").arg("-uz").arg(&self.at).output();
            }
        }
    }
}

/// Folder names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Where snapshot folder `snap` under the mount shows the source `src`.
fn shown(m: &Mount, snap: &str, src: &Path) -> PathBuf {
    under(&m.at.join("snapshots").join(snap), src)
}

#[test]
fn mount_shows_snapshots_as_restored_reads_anywhere_and_follows_new_ones() {
    if !fuse_available("mount_shows_snapshots_as_restored_reads_anywhere_and_follows_new_ones") {
        return;
    }
    let f = Fixture::init();
    // Where the time goes, printed with the test's output on a failure.
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("{:>7.2} s  {what}", t0.elapsed().as_secs_f64());
    let src = f.path("src");
    sample_tree(&src, true);
    fs::hard_link(src.join("docs/readme.md"), src.join("readme-again.md")).expect("hard link");
    let big = Rng::new(77).bytes(9_000_000);
    write(&src.join("data/large.bin"), &big);
    write(&src.join("night.txt"), "first night\n");
    xattr::set(src.join("hello.txt"), "user.origin", b"node-1").expect("a user xattr on the test folder");
    f.backup(&[&s(&src)]);
    write(&src.join("night.txt"), "second night\n");
    f.backup(&[&s(&src)]);

    phase("two backups");
    let mut m = Mount::start(&f, &f.path("mnt"));
    phase("mounted");
    let listed = names(&m.at.join("snapshots"));
    assert_eq!(listed.len(), 3, "two snapshots and latest: {listed:?}");
    assert!(listed.contains(&"latest".to_string()), "{listed:?}");
    let latest = fs::read_link(m.at.join("snapshots/latest")).expect("latest is a link");
    let latest = s(&latest);
    let older = listed
        .iter()
        .find(|n| **n != latest && *n != "latest")
        .expect("the older one")
        .clone();

    // The newest snapshot, mounted, is the source and what a restore gives.
    let mounted = manifest(&shown(&m, &latest, &src));
    assert_same_tree(&manifest(&src), &mounted);
    phase("mounted tree compared");
    let target = f.path("restored");
    f.cairn().args(["restore", "latest", "--target", &s(&target)]).ok();
    phase("restored");
    assert_same_tree(&manifest(&under(&target, &src)), &mounted);
    assert_eq!(
        fs::read_to_string(shown(&m, &older, &src).join("night.txt")).unwrap(),
        "first night\n"
    );
    assert_eq!(
        fs::read_to_string(shown(&m, &latest, &src).join("night.txt")).unwrap(),
        "second night\n"
    );
    for group in ["hosts", "tags"] {
        // No tags were given: tags/ is empty; hosts/<this host>/ has both.
        let inner = names(&m.at.join(group));
        if group == "hosts" {
            assert_eq!(inner.len(), 1, "{inner:?}");
            assert_eq!(names(&m.at.join("hosts").join(&inner[0])).len(), 3);
        } else {
            assert!(inner.is_empty(), "{inner:?}");
        }
    }

    phase("compared with the source and a restore");
    // Random-offset reads of a large file.
    let large = shown(&m, &latest, &src).join("data/large.bin");
    let mut file = fs::File::open(&large).expect("open");
    let seed = clock_seed() | 1;
    eprintln!("random offsets from seed {seed}");
    let mut rng = Rng::new(seed);
    for _ in 0..40 {
        let off = (rng.next_u64() % big.len() as u64) as usize;
        let len = ((rng.next_u64() % 300_000) as usize).min(big.len() - off);
        let mut buf = vec![0u8; len];
        file.seek(SeekFrom::Start(off as u64)).expect("seek");
        file.read_exact(&mut buf).expect("read");
        assert!(buf == big[off..off + len], "bytes {off}+{len} differ");
    }
    // Several readers at once.
    let want = hash_file(&src.join("data/large.bin"));
    let readers: Vec<_> = (0..4)
        .map(|i| {
            let p = if i % 2 == 0 {
                large.clone()
            } else {
                shown(&m, &older, &src).join("data/large.bin")
            };
            std::thread::spawn(move || hash_file(&p))
        })
        .collect();
    for r in readers {
        assert_eq!(r.join().expect("reader"), want);
    }

    phase("random and parallel reads");
    // A snapshot taken while mounted appears without remounting.
    write(&src.join("late.txt"), "taken while mounted\n");
    f.backup(&[&s(&src)]);
    let start = Instant::now();
    while names(&m.at.join("snapshots")).len() < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the new snapshot did not appear"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let start = Instant::now();
    while !m
        .at
        .join("snapshots/latest")
        .join(src.strip_prefix("/").unwrap())
        .join("late.txt")
        .exists()
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "latest did not move to the new snapshot"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    phase("the new snapshot appeared");
    // Ctrl-C while a file is open: said busy, still served; then it ends.
    m.interrupt();
    assert!(
        m.wait_for("busy"),
        "no word of the busy mount:\n{}",
        m.stderr.join("\n")
    );
    assert!(is_mounted(&m.at), "unmounted while busy");
    let mut rest = Vec::new();
    file.seek(SeekFrom::Start(0)).expect("seek");
    file.read_to_end(&mut rest).expect("still readable");
    assert!(rest == big);
    drop(file);
    let at = m.at.clone();
    let (status, stderr) = m.stop();
    phase("unmounted");
    assert_eq!(status.code(), Some(0), "{}", stderr.join("\n"));
    assert!(!is_mounted(&at), "still mounted after Ctrl-C");
    assert!(
        !stderr.iter().any(|l| l.contains("WARN") || l.contains("ERROR")),
        "{}",
        stderr.join("\n")
    );
    drop(f);
    phase("fixture removed");
}

#[test]
fn mount_refuses_a_missing_mount_point_clearly() {
    let f = Fixture::init();
    let r = f.cairn().args(["mount", &s(&f.path("nowhere"))]).fails();
    assert!(
        r.stderr().contains("mount point") && r.stderr().contains("nowhere"),
        "{r}"
    );
}
