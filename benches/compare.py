#!/usr/bin/env python3
"""Side-by-side benchmark: cairn vs restic (vs rustic) on the "nights" data set.

Run through benches/compare.sh. Standard library only.

For each night the generator brings one folder (always the same path) to
that night, and every tool backs it up into its own repository. Then each
tool restores the latest snapshot in full, restores the largest SSTable
Data.db alone, and runs `check --read-data`. Every step is timed with
/usr/bin/time (wall, user+sys CPU, peak RSS) and the repository size is
measured after it. Measurements are warm-cache; `sync` runs between steps.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TIME = "/usr/bin/time"
PASSWORD = "cairn-bench-password\n"


def log(msg):
    print(f"[compare] {msg}", file=sys.stderr, flush=True)


def mb(n):
    return n / 1e6


def dir_bytes(path):
    """Apparent size of all regular files under path."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            total += st.st_size
    return total


def rmtree(path):
    if os.path.lexists(path):
        shutil.rmtree(path)


# Restored trees set aside until the run ends (see set_aside).
_TRASH = []


def set_aside(path, work):
    """Moves a restored tree out of the way instead of deleting it; the run
    deletes them all when it ends (empty_trash). Why: on ext4 without a
    journal (this project's machine) the inode allocator passes over every
    inode freed in the last minute or more, reading its inode table block,
    for each file it creates (`perf`: recently_deleted,
    find_get_block_common). Deleting one tool's restored tree just before
    the next tool restores as many files into the same folder charged the
    other's deletion to that tool's restore. (The restore rows still swing
    between runs: most of that is the VM's cost of page-cache pages touched
    for the first time, see benches/RESULTS.md.) Needs disk for every
    restore of the run."""
    if not os.path.lexists(path):
        return
    dest = os.path.join(work, "trash", f"{len(_TRASH)}-{os.path.basename(path)}")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.rename(path, dest)
    _TRASH.append(dest)


def empty_trash(work):
    """Deletes what set_aside kept (and what an interrupted run left)."""
    rmtree(os.path.join(work, "trash"))
    _TRASH.clear()


def tail(path, n=8):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def first_error(path, n=10):
    """The first compiler error block of a cargo log (or its tail)."""
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for i, line in enumerate(lines):
        if line.startswith("error"):
            return "\n".join(lines[i:i + n])
    return "\n".join(lines[-n:])


def is_root():
    return os.geteuid() == 0


def ensure_debian_packages(need):
    """need: list of (check_path_or_cmd, package). Installs missing ones as root."""
    missing = []
    for probe, pkg in need:
        found = os.path.exists(probe) if probe.startswith("/") else shutil.which(probe)
        if not found:
            missing.append(pkg)
    if not missing:
        return
    if not is_root():
        sys.exit(f"missing packages {missing}: install them (apt-get install {' '.join(missing)})")
    log(f"installing {' '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env)
        r = subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env)
    if r.returncode != 0:
        sys.exit(f"apt-get install {' '.join(missing)} failed")


def postgres_present():
    if os.environ.get("CAIRN_PG_BINDIR"):
        return True
    base = "/usr/lib/postgresql"
    if os.path.isdir(base):
        for v in os.listdir(base):
            if os.path.exists(os.path.join(base, v, "bin", "initdb")):
                return True
    return shutil.which("initdb") is not None


class Measurement:
    def __init__(self, ok, rc, wall, cpu, rss_kb, note=""):
        self.ok = ok
        self.rc = rc
        self.wall = wall
        self.cpu = cpu
        self.rss_kb = rss_kb
        self.repo_bytes = None
        self.note = note
        self.verify = ""
        self.spread = ""

    def as_dict(self):
        return {
            "ok": self.ok,
            "rc": self.rc,
            "wall_s": self.wall,
            "cpu_s": self.cpu,
            "peak_rss_kb": self.rss_kb,
            "repo_bytes": self.repo_bytes,
            "note": self.note,
            "verify": self.verify,
            "spread": self.spread,
        }


def measured(cmd, env, logbase):
    """Runs cmd under /usr/bin/time; returns a Measurement."""
    tfile = logbase + ".time"
    out = open(logbase + ".out", "wb")
    err = open(logbase + ".err", "wb")
    try:
        try:
            r = subprocess.run(
                [TIME, "-f", "%e %U %S %M", "-o", tfile, "--", *cmd],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        except OSError as e:
            return Measurement(False, None, None, None, None, f"could not run: {e}")
    finally:
        out.close()
        err.close()
    wall = cpu = rss = None
    try:
        with open(tfile) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 4:
                    try:
                        wall = float(parts[0])
                        cpu = float(parts[1]) + float(parts[2])
                        rss = int(parts[3])
                    except ValueError:
                        pass
    except OSError:
        pass
    ok = r.returncode == 0
    note = ""
    if not ok:
        note = f"exit {r.returncode}"
        t = tail(logbase + ".err", 4)
        if t:
            note += ": " + t.replace("\n", " / ")
    return Measurement(ok, r.returncode, wall, cpu, rss, note)


class Tool:
    """A backup program and how to drive it."""

    def __init__(self, name, binary, work):
        self.name = name
        self.binary = binary
        self.repo = os.path.join(work, "repos", name)
        self.cache = os.path.join(work, "cache", name)
        self.password_file = os.path.join(work, "password")
        self.logs = os.path.join(work, "logs")
        self.broken = None  # reason if the tool cannot go on
        self.env = dict(os.environ)

    def version(self):
        for args in (["version"], ["--version"]):
            try:
                r = subprocess.run(
                    [self.binary, *args], env=self.env, capture_output=True, text=True, timeout=60
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            if r.returncode == 0 and r.stdout.strip():
                return r.stdout.strip().splitlines()[0]
        return "unknown"

    def run(self, step, args):
        os.sync()
        base = os.path.join(self.logs, f"{self.name}-{step}")
        m = measured([self.binary, *args], self.env, base)
        os.sync()
        if os.path.isdir(self.repo):
            m.repo_bytes = dir_bytes(self.repo)
        status = "ok" if m.ok else f"FAILED ({m.note})"
        log(f"{self.name:7s} {step:18s} wall {fmt(m.wall)} s, cpu {fmt(m.cpu)} s, "
            f"rss {fmt(m.rss_kb and m.rss_kb / 1024, 0)} MiB: {status}")
        return m


class Restic(Tool):
    def __init__(self, binary, work):
        super().__init__("restic", binary, work)
        self.env.update(
            RESTIC_REPOSITORY=self.repo,
            RESTIC_PASSWORD_FILE=self.password_file,
            RESTIC_CACHE_DIR=self.cache,
            RESTIC_PROGRESS_FPS="0.016",
        )

    def init(self):
        return self.run("init", ["init"])

    def backup(self, step, path):
        return self.run(step, ["backup", path, "--host", "bench"])

    def restore(self, step, target):
        return self.run(step, ["restore", "latest", "--target", target])

    def restore_file(self, step, path, target):
        return self.run(step, ["restore", "latest", "--target", target, "--include", path])

    def check(self, step):
        return self.run(step, ["check", "--read-data"])


class Cairn(Tool):
    def __init__(self, binary, work):
        super().__init__("cairn", binary, work)
        self.env.update(CAIRN_REPOSITORY=self.repo, CAIRN_PASSWORD_FILE=self.password_file)

    def init(self):
        return self.run("init", ["init"])

    def backup(self, step, path):
        return self.run(step, ["backup", path, "--host", "bench", "--json"])

    def restore(self, step, target):
        return self.run(step, ["restore", "latest", "--target", target])

    def restore_file(self, step, path, target):
        return self.run(step, ["restore", f"latest:{path}", "--target", target])

    def check(self, step):
        return self.run(step, ["check", "--read-data"])


class Rustic(Tool):
    def __init__(self, binary, work):
        super().__init__("rustic", binary, work)
        self.env.update(
            RUSTIC_REPOSITORY=self.repo,
            RUSTIC_PASSWORD_FILE=self.password_file,
            RUSTIC_CACHE_DIR=self.cache,
            RUSTIC_NO_PROGRESS="true",
        )

    def init(self):
        return self.run("init", ["init"])

    def backup(self, step, path):
        return self.run(step, ["backup", path, "--host", "bench"])

    def restore(self, step, target):
        return self.run(step, ["restore", "latest", target])

    def restore_file(self, step, path, target):
        return self.run(step, ["restore", f"latest:{path}", target])

    def check(self, step):
        return self.run(step, ["check", "--read-data"])


def fmt(v, digits=1):
    if v is None:
        return "-"
    return f"{v:.{digits}f}"


def file_digest(path):
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def tree_manifest(root):
    """{relative path: (size, digest)} for regular files, plus symlinks."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            else:
                out[rel] = (os.path.getsize(p), file_digest(p))
    return out


def find_restored_root(target, src):
    """Where a tool put the restored tree: target + absolute source path
    (restic), or target itself, or target/<basename>."""
    for cand in (
        os.path.join(target, src.lstrip("/")),
        target,
        os.path.join(target, os.path.basename(src)),
    ):
        if os.path.isdir(os.path.join(cand, "node1")) or os.path.isdir(os.path.join(cand, "redis")):
            return cand
    return None


def verify_tree(target, src, expected):
    root = find_restored_root(target, src)
    if root is None:
        return "MISMATCH: restored tree not found"
    got = tree_manifest(root)
    missing = [p for p in expected if p not in got]
    extra = [p for p in got if p not in expected]
    differ = [p for p in expected if p in got and got[p] != expected[p]]
    if not (missing or extra or differ):
        return f"ok ({len(got)} files identical)"
    return f"MISMATCH: {len(missing)} missing, {len(extra)} extra, {len(differ)} differ"


def verify_file(target, src_file):
    want = (os.path.getsize(src_file), file_digest(src_file))
    name = os.path.basename(src_file)
    found = []
    for dirpath, _dirs, files in os.walk(target):
        if name in files:
            found.append(os.path.join(dirpath, name))
    if not found:
        return "MISMATCH: file not restored"
    for p in found:
        if (os.path.getsize(p), file_digest(p)) == want:
            others = sum(len(fs) for _, _, fs in os.walk(target)) - 1
            return "ok" + (f" (+{others} other files restored)" if others else "")
    return "MISMATCH: content differs"


def build(args, cargo_target):
    """Builds gen-nights (required) and, if wanted, cairn. Returns cairn error or None."""
    log("building gen-nights (cargo build --release -p cairn-benches)")
    r = subprocess.run(["cargo", "build", "--release", "-p", "cairn-benches", "--bins"], cwd=ROOT)
    if r.returncode != 0:
        if not os.path.exists(os.path.join(cargo_target, "release", "gen-nights")):
            sys.exit("building gen-nights failed")
        log("building gen-nights failed; using the existing target/release/gen-nights")
    if "cairn" not in args.tools:
        return None
    log("building cairn (cargo build --release -p cairn-cli)")
    blog = os.path.join(args.work, "logs", "cargo-build-cairn.log")
    with open(blog, "wb") as f:
        r = subprocess.run(
            ["cargo", "build", "--release", "-p", "cairn-cli"], cwd=ROOT, stdout=f, stderr=f
        )
    if r.returncode != 0:
        return f"build failed (exit {r.returncode}); see {blog}:\n{first_error(blog)}"
    if not os.path.exists(os.path.join(cargo_target, "release", "cairn")):
        return "build produced no target/release/cairn"
    return None


def warm(src):
    """Reads every file under `src` once so it sits in the page cache."""
    for root, _, files in os.walk(src):
        for f in files:
            p = os.path.join(root, f)
            if os.path.islink(p):
                continue
            try:
                with open(p, "rb") as fh:
                    while fh.read(1 << 20):
                        pass
            except OSError:
                pass


def prepare_night(args, gen, night, data_dir):
    """Brings the backup source to `night`; returns (src path, summary dict)."""
    if args.night_folders:
        src = os.path.join(args.work, "src")
        rmtree(src)
        night_dir = os.path.join(data_dir, f"night-{night}")
        if not os.path.isdir(night_dir):
            sys.exit(f"{night_dir} is missing")
        # Hard-link copy: same inodes as the data set's own files (a plain
        # copy if the data set is on another file system).
        if subprocess.run(["cp", "-al", night_dir, src]).returncode != 0:
            rmtree(src)
            subprocess.run(["cp", "-a", night_dir, src], check=True)
        files = sum(len(fs) for _, _, fs in os.walk(src))
        return src, {"night": night, "files": files, "bytes": dir_bytes(src)}
    cmd = [
        gen, "--out", data_dir, "--night", str(night), "--nights", str(args.nights),
        "--size-mb", str(args.size_mb), "--seed", str(args.seed), "--json",
    ]
    log("generating: " + " ".join(cmd))
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"gen-nights failed for night {night}")
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    summary = json.loads(lines[-1]) if lines else {}
    return os.path.join(data_dir, "src"), summary


def largest_data_db(src):
    best = None
    for dirpath, _dirs, files in os.walk(src):
        for f in files:
            if f.endswith("-Data.db"):
                p = os.path.join(dirpath, f)
                s = os.path.getsize(p)
                if best is None or s > best[1]:
                    best = (p, s)
    return best


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(v):
    return "-" if v is None else f"{v:.2f}x"


def render(args, meta, steps, tools, results, notes):
    L = []
    L.append("# Cairn side-by-side benchmark (nights)")
    L.append("")
    L.append(f"- date: {meta['date']}")
    L.append(f"- machine: {meta['machine']}")
    if args.night_folders:
        L.append(f"- data: {args.nights} night folders from `{meta['data']}`, "
                 f"source path `{meta['src']}` (same path every night)")
    else:
        L.append(
            f"- data: {args.nights} nights, --size-mb {args.size_mb}, --seed {args.seed}, "
            f"source path `{meta['src']}` (same path every night)"
        )
    for s in meta["nights"]:
        extra = ""
        if s.get("sstables") is not None:
            extra = (f", {s['sstables']} SSTables ({s.get('sstables_new')} new: "
                     f"{s.get('flushes')} flushes, {s.get('compactions')} compactions)")
        files = s.get("files")
        files = f"{files} files, " if files is not None else ""
        L.append(f"  - night {s['night']}: {files}{fmt(mb(s.get('bytes') or 0))} MB{extra}")
    if meta.get("single_file"):
        L.append(f"- single-file restore: `{meta['single_file']}` ({fmt(mb(meta['single_file_bytes']))} MB)")
    for t in tools:
        L.append(f"- {t.name}: {meta['versions'].get(t.name, 'unknown')}")
    for n in meta.get("skipped", []):
        L.append(f"- {n}")
    L.append("- warm cache (no page-cache drop), `sync` between steps; encryption and compression on for all tools")
    L.append("")
    L.append("## Results per tool")
    L.append("")
    L.append("| step | tool | wall s | CPU s (user+sys) | peak RSS MiB | repo MB | status |")
    L.append("|---|---|---:|---:|---:|---:|---|")
    for step in steps:
        for t in tools:
            m = results.get((t.name, step))
            if m is None:
                L.append(f"| {step} | {t.name} | - | - | - | - | not run |")
                continue
            status = "ok" if m.ok else f"FAILED ({m.note.split(':')[0]})"
            if m.verify:
                status += f"; verify {m.verify}"
            if m.spread:
                status += f"; {m.spread}"
            rss = m.rss_kb / 1024 if m.rss_kb is not None else None
            repo = mb(m.repo_bytes) if m.repo_bytes is not None else None
            L.append(f"| {step} | {t.name} | {fmt(m.wall, 2)} | {fmt(m.cpu, 2)} | {fmt(rss, 0)} | {fmt(repo)} | {status} |")
    L.append("")
    L.append("## cairn vs restic")
    L.append("")
    names = [t.name for t in tools]
    if "cairn" not in names or "restic" not in names:
        L.append("Not available: this run had " + (", ".join(names) or "no tools") + ".")
    else:
        L.append("speed = restic wall / cairn wall (> 1: cairn faster); "
                 "CPU = restic CPU / cairn CPU; RSS and repo = cairn / restic (< 1: cairn smaller).")
        L.append("")
        L.append("| step | cairn wall s | restic wall s | speed | CPU | cairn RSS MiB | restic RSS MiB | RSS | cairn repo MB | restic repo MB | repo |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for step in steps:
            c = results.get(("cairn", step))
            r = results.get(("restic", step))

            def g(m, attr):
                if m is None or not m.ok:
                    return None
                return getattr(m, attr)

            cw, rw = g(c, "wall"), g(r, "wall")
            cc, rc = g(c, "cpu"), g(r, "cpu")
            cr, rr = g(c, "rss_kb"), g(r, "rss_kb")
            cb, rb = g(c, "repo_bytes"), g(r, "repo_bytes")
            L.append(
                f"| {step} | {fmt(cw, 2)} | {fmt(rw, 2)} | {fmt_ratio(ratio(rw, cw))} | {fmt_ratio(ratio(rc, cc))} "
                f"| {fmt(cr and cr / 1024, 0)} | {fmt(rr and rr / 1024, 0)} | {fmt_ratio(ratio(cr, rr))} "
                f"| {fmt(cb and mb(cb))} | {fmt(rb and mb(rb))} | {fmt_ratio(ratio(cb, rb))} |"
            )
    lim = meta.get("limits")
    c1 = results.get(("cairn", "night-1 backup"))
    cr = results.get(("cairn", "restore latest (full)"))
    if lim and meta.get("nights"):
        L.append("")
        L.append("## cairn against the machine's 2-core limit")
        L.append("")
        L.append(f"Single-core stage speeds from `target/release/limits` (zstd level {lim['zstd_level']}, "
                 f"{lim['sample_mb']} MB of Data.db-like data):")
        L.append("")
        for st in lim["stages"]:
            L.append(f"- {st['stage']}: {st['mb_s']:.0f} MB/s")
        L.append("")
        n1 = meta["nights"][0]["bytes"] / 1e6
        last = meta["nights"][-1]["bytes"] / 1e6
        if c1 is not None and c1.ok and c1.wall:
            got = n1 / c1.wall
            L.append(f"- night-1 backup: {got:.0f} MB/s = {100 * got / lim['backup_limit_mb_s']:.0f}% "
                     f"of the {lim['backup_limit_mb_s']:.0f} MB/s backup limit")
        if cr is not None and cr.ok and cr.wall:
            got = last / cr.wall
            L.append(f"- full restore: {got:.0f} MB/s = {100 * got / lim['restore_limit_mb_s']:.0f}% "
                     f"of the {lim['restore_limit_mb_s']:.0f} MB/s restore limit")
    if notes:
        L.append("")
        L.append("## Failures and notes")
        L.append("")
        for n in notes:
            L.append(f"- {n}")
    L.append("")
    return "\n".join(L)


def read_only_steps(tools, restore_dir, src, expected, big, args, runs, notes):
    """One run of each tool's full restore, single-file restore and check,
    each verified; appends the measurements to runs[(tool, step)]."""
    def keep(t, step, m):
        runs.setdefault((t.name, step), []).append(m)
        if not m.ok:
            notes.append(f"{t.name}: {step} failed: {m.note}")

    for t in tools:
        if t.broken:
            continue
        target = os.path.join(restore_dir, t.name)
        set_aside(target, args.work)
        os.makedirs(target)
        step = "restore latest (full)"
        m = t.restore(step, target)
        if m.ok and expected is not None:
            m.verify = verify_tree(target, src, expected)
            if not m.verify.startswith("ok"):
                notes.append(f"{t.name}: full restore {m.verify}")
        keep(t, step, m)
        set_aside(target, args.work)

        if big:
            step = "restore 1 file"
            os.makedirs(target)
            m = t.restore_file(step, big[0], target)
            if m.ok and not args.no_verify:
                m.verify = verify_file(target, big[0])
                if not m.verify.startswith("ok"):
                    notes.append(f"{t.name}: single-file restore {m.verify}")
            keep(t, step, m)
            set_aside(target, args.work)

        keep(t, "check --read-data", t.check("check --read-data"))


def median_run(ms):
    """The run to report of several: a failed one if any failed, else the
    median by wall time, its status naming the spread."""
    failed = [m for m in ms if not m.ok]
    if failed or len(ms) == 1:
        return (failed or ms)[0]
    by_wall = sorted(ms, key=lambda m: m.wall)
    m = by_wall[(len(by_wall) - 1) // 2]
    spread = f"median of {len(ms)} runs, {by_wall[0].wall:.2f}-{by_wall[-1].wall:.2f} s"
    m.spread = spread
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1000, help="nominal size of one night (default 1000)")
    ap.add_argument("--nights", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--tools", default="cairn,restic,rustic",
                    help="comma-separated subset of cairn,restic,rustic (default: all)")
    ap.add_argument("--work", default=os.path.join(ROOT, "bench-work"), help="work dir (default bench-work/)")
    ap.add_argument("--data", help="existing data: a gen-nights --out dir (reused, generated if needed) "
                                   "or a dir holding night-1..night-N folders")
    ap.add_argument("--out", help="markdown results file (default <work>/results.md)")
    ap.add_argument("--no-build", action="store_true", help="skip cargo build (use existing binaries)")
    ap.add_argument("--no-verify", action="store_true", help="skip comparing restored files with the source")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the read-only steps (restores, check) this many times, the tools taking "
                         "turns, and report each tool's median run (default 1)")
    args = ap.parse_args()

    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    for t in args.tools:
        if t not in ("cairn", "restic", "rustic"):
            sys.exit(f"unknown tool {t!r}")
    if args.nights < 1:
        sys.exit("--nights must be >= 1")
    if args.repeat < 1:
        sys.exit("--repeat must be >= 1")
    args.work = os.path.abspath(args.work)
    args.out = os.path.abspath(args.out or os.path.join(args.work, "results.md"))
    os.makedirs(os.path.join(args.work, "logs"), exist_ok=True)
    empty_trash(args.work)
    cargo_target = os.path.abspath(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")))

    data_dir = os.path.abspath(args.data or os.path.join(args.work, f"data-{args.size_mb}mb-seed{args.seed}"))
    args.night_folders = os.path.isdir(os.path.join(data_dir, "night-1")) and not os.path.isdir(
        os.path.join(data_dir, "live")
    )

    need = [(TIME, "time")]
    if not args.night_folders:
        need.append(("redis-server", "redis-server"))
        if not postgres_present():
            need.append(("/nonexistent-initdb", "postgresql"))
    ensure_debian_packages(need)

    notes = []
    skipped = []
    cairn_err = None
    if not args.no_build:
        cairn_err = build(args, cargo_target)
    gen = os.path.join(cargo_target, "release", "gen-nights")

    tools = []
    for name in args.tools:
        if name == "restic":
            # The newest packaged restic (0.19, Debian unstable) unless
            # RESTIC_SUITE says otherwise (trixie: 0.18, for older tables).
            env = dict(os.environ)
            env.setdefault("RESTIC_SUITE", "sid")
            r = subprocess.run(["bash", os.path.join(HERE, "fetch-restic.sh"), args.work],
                               stdout=subprocess.PIPE, text=True, env=env)
            lines = r.stdout.strip().splitlines()
            if r.returncode != 0 or not lines:
                notes.append(f"restic: could not fetch restic from Debian {env['RESTIC_SUITE']} (benches/fetch-restic.sh failed), skipped")
                log(notes[-1])
                continue
            tools.append(Restic(lines[-1], args.work))
        elif name == "cairn":
            binary = os.path.join(cargo_target, "release", "cairn")
            if cairn_err:
                notes.append(f"cairn: {cairn_err}")
                log(notes[-1])
            t = Cairn(binary, args.work)
            if cairn_err or not os.path.exists(binary):
                t.broken = "not built"
            tools.append(t)
        elif name == "rustic":
            p = shutil.which("rustic")
            if not p:
                skipped.append("rustic: not on PATH (benches/build-rustic.sh builds it), skipped")
                log(skipped[-1])
                continue
            tools.append(Rustic(p, args.work))

    # Fresh repositories, caches and password file.
    with open(os.path.join(args.work, "password"), "w") as f:
        f.write(PASSWORD)
    for t in tools:
        rmtree(t.repo)
        rmtree(t.cache)
        os.makedirs(os.path.dirname(t.repo), exist_ok=True)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "versions": {t.name: (t.version() if not t.broken else "not built") for t in tools},
        "nights": [],
        "skipped": skipped,
        "data": data_dir,
    }

    results = {}
    steps = []
    for t in tools:
        if t.broken:
            continue
        m = t.init()
        if not m.ok:
            t.broken = f"init failed ({m.note})"
            notes.append(f"{t.name}: init failed: {m.note}")

    src = None
    for night in range(1, args.nights + 1):
        src, summary = prepare_night(args, gen, night, data_dir)
        src = os.path.abspath(src)
        meta["src"] = src
        meta["nights"].append(summary)
        step = f"night-{night} backup"
        steps.append(step)
        for t in tools:
            if t.broken:
                continue
            # Every tool starts from the same warm page cache: the night's
            # files were just written, and whichever tool ran first would
            # otherwise pay for reading them from disk.
            warm(src)
            m = t.backup(step, src)
            results[(t.name, step)] = m
            if not m.ok:
                notes.append(f"{t.name}: {step} failed: {m.note}")

    expected = None
    if not args.no_verify and src:
        log("hashing the source tree for restore verification")
        expected = tree_manifest(src)

    big = largest_data_db(src) if src else None
    restore_dir = os.path.join(args.work, "restore")
    # Restores and checks change nothing, so they can be run again; the
    # tools take turns so that a slow spell of the machine hits all of them.
    runs = {}
    for _ in range(args.repeat):
        read_only_steps(tools, restore_dir, src, expected, big, args, runs, notes)
    for key, ms in runs.items():
        results[key] = median_run(ms)
    steps += ["restore latest (full)"] + (["restore 1 file"] if big else []) + ["check --read-data"]

    if big:
        meta["single_file"] = big[0]
        meta["single_file_bytes"] = big[1]
    for t in tools:
        if t.broken:
            notes.append(f"{t.name}: {t.broken}; its rows are 'not run'")

    limits_bin = os.path.join(cargo_target, "release", "limits")
    if os.path.exists(limits_bin):
        log("measuring stage speeds (target/release/limits --json)")
        r = subprocess.run([limits_bin, "--json"], capture_output=True, text=True)
        if r.returncode == 0:
            try:
                meta["limits"] = json.loads(r.stdout)
            except ValueError:
                notes.append("limits: unreadable output")
    empty_trash(args.work)
    text = render(args, meta, steps, tools, results, notes)
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    raw = {
        "meta": meta,
        "args": {"size_mb": args.size_mb, "nights": args.nights, "seed": args.seed, "tools": args.tools},
        "results": [{"tool": k[0], "step": k[1], **v.as_dict()} for k, v in results.items()],
        "notes": notes,
    }
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(raw, f, indent=2)
    log(f"results written to {args.out}")


if __name__ == "__main__":
    main()
