#!/usr/bin/env python3
"""Costs that grow with the repository, side by side with restic (issue 14).

`repo_scale.py` measures cairn alone on generated repositories, which
restic cannot read. Here both tools build their repository the same way,
by backing up real files: a tree of --files distinct small files (one data
blob each, 1,000 to a folder), then --snapshots - 1 more backups of a small
folder (one file of it changed each time), so each repository holds about
--files data blobs and --snapshots snapshots. Then every step runs once
untimed (the repository in the page cache, as on a machine that backs up
nightly) and is timed once:

- `snapshots`         list every snapshot
- `dump one file`     open, load the index, read one file of the big snapshot
- `restore one file`  the same file through `restore --include`
- `unchanged backup`  the small folder again (its parent found among all
                      snapshots; the index is loaded)
- `check`             structure only (restic: no --read-data either)

Repositories and the source tree are kept under --work and reused.

With --clone-snapshots N, each repository is copied and given N more
snapshots, copies of the small folder's newest one, each an hour older
(`clone-snapshots` for cairn, `restic_clone.py` for restic: 10,000 real
backups would take restic hours), and the steps run on the copies.

Usage: RESTIC_SUITE=sid python3 benches/restic_scale.py [--files 300000,1000000]
           [--snapshots 100] [--clone-snapshots N] [--work DIR] [--no-build]
"""
import argparse
import json
import os
import subprocess
import sys

import compare
import restic_clone
from repo_scale import timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PER_DIR = 1000


def log(msg):
    print(f"restic-scale: {msg}", file=sys.stderr, flush=True)


def run(cmd, env):
    return subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True).stdout


def make_tree(root, n):
    """n distinct 60-byte files, PER_DIR to a folder; kept when complete."""
    done = os.path.join(root, ".complete")
    if os.path.exists(done):
        return
    log(f"writing {n} files under {root}")
    subprocess.run(["rm", "-rf", root], check=True)
    for i in range(n):
        d = os.path.join(root, f"d{i // PER_DIR:05d}")
        if i % PER_DIR == 0:
            os.makedirs(d)
        with open(os.path.join(d, f"f{i % PER_DIR:04d}.db"), "wb") as f:
            f.write(b"%012d" % i * 5)
    open(done, "w").close()


class Side:
    """One tool's repository and the commands of each step."""

    def __init__(self, name, binary, repo, pw, cache):
        self.name = name
        self.binary = binary
        self.repo = repo
        self.env = dict(os.environ)
        if name == "cairn":
            self.env.update(CAIRN_REPOSITORY=repo, CAIRN_PASSWORD_FILE=pw)
            self.env.pop("CAIRN_PASSWORD", None)
        else:
            self.env.update(RESTIC_REPOSITORY=repo, RESTIC_PASSWORD_FILE=pw, RESTIC_CACHE_DIR=cache,
                            RESTIC_PROGRESS_FPS="0.016")

    def cmd(self, *args):
        return [self.binary, "-q", *args]

    def backup(self, path, host):
        return self.cmd("backup", path, "--host", host)

    def big_snapshot(self):
        """Id of the snapshot of the many-files tree."""
        out = run([self.binary, "--json", "snapshots", "--host", "scale-tree"], self.env)
        snaps = json.loads(out)
        return snaps[0]["id"]

    def build(self, tree, small, snapshots):
        if os.path.exists(os.path.join(self.repo, ".complete")):
            return
        subprocess.run(["rm", "-rf", self.repo], check=True)
        run(self.cmd("init"), self.env)
        log(f"{self.name}: backing up {tree}")
        wall, rss = timed(self.backup(tree, "scale-tree"), self.env)
        log(f"{self.name}: first backup {wall:.1f} s, {rss:.0f} MiB")
        changing = os.path.join(small, "night")
        for i in range(snapshots - 1):
            with open(changing, "w") as f:
                f.write(f"{self.name} night {i}\n")
            run(self.backup(small, "scale-small"), self.env)
        open(os.path.join(self.repo, ".complete"), "w").close()

    def complete(self):
        return os.path.exists(os.path.join(self.repo, ".complete"))

    def with_clones(self, count, pw, cloner):
        """This side on a copy of its repository with `count` more snapshots."""
        copy = f"{self.repo}-c{count}"
        if not os.path.exists(os.path.join(copy, ".complete")):
            log(f"{self.name}: copying {self.repo} and adding {count} snapshots")
            subprocess.run(["rm", "-rf", copy], check=True)
            subprocess.run(["cp", "-a", self.repo, copy], check=True)
            if self.name == "cairn":
                run([cloner, "--repo", copy, "--host", "scale-small", "--count", str(count)], self.env)
            else:
                with open(pw, "rb") as f:
                    restic_clone.clone(copy, f.read().split(b"\n")[0], "scale-small", count)
            open(os.path.join(copy, ".complete"), "w").close()
        # The copy has the original's id: restic's cache for it is kept apart.
        return Side(self.name, self.binary, copy, pw, os.path.join(os.path.dirname(copy), f"cache-c{count}"))

    def steps(self, one, out, small):
        big = self.big_snapshot()
        return [
            ("snapshots", self.cmd("snapshots")),
            ("dump one file", self.cmd("dump", big, one)),
            ("restore one file", self.cmd("restore", big, "--include", one, "--target", out)),
            ("unchanged backup", self.backup(small, "scale-small")),
            ("check", self.cmd("check")),
        ]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", default="300000,1000000", help="comma-separated file (blob) counts")
    ap.add_argument("--snapshots", type=int, default=100)
    ap.add_argument("--clone-snapshots", type=int, default=0, metavar="N",
                    help="time copies of the repositories with N more snapshots each")
    ap.add_argument("--work", default=os.path.join(ROOT, "bench-work", "restic-scale"))
    ap.add_argument("--no-build", action="store_true", help="use the binaries in target/release")
    args = ap.parse_args()
    counts = [int(c) for c in args.files.split(",")]
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    if not args.no_build:
        log("cargo build --release -p cairn-cli -p cairn-benches")
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "cairn-cli", "-p", "cairn-benches"],
                       cwd=ROOT, check=True)
    os.makedirs(args.work, exist_ok=True)
    r = subprocess.run(["bash", os.path.join(compare.HERE, "fetch-restic.sh"), args.work],
                       stdout=subprocess.PIPE, text=True, env=dict(os.environ, RESTIC_SUITE=os.environ.get(
                           "RESTIC_SUITE", "sid")))
    if r.returncode != 0 or not r.stdout.strip():
        sys.exit("could not fetch restic (benches/fetch-restic.sh)")
    restic = r.stdout.strip().splitlines()[-1]
    cairn = os.path.join(target, "release", "cairn")
    cloner = os.path.join(target, "release", "clone-snapshots")
    pw = os.path.join(args.work, "password")
    with open(pw, "w") as f:
        f.write("restic-scale\n")
    small = os.path.join(args.work, "small")
    os.makedirs(small, exist_ok=True)
    with open(os.path.join(small, "README"), "w") as f:
        f.write("the small folder backed up every night\n")
    out = os.path.join(args.work, "restored")

    rows = {}
    versions = {}
    for n in counts:
        tree = os.path.join(args.work, f"tree-{n}")
        one = os.path.join(tree, f"d{(n - 1) // PER_DIR:05d}", f"f{(n - 1) % PER_DIR:04d}.db")
        sides = [Side(name, binary, os.path.join(args.work, f"{name}-{n}-s{args.snapshots}"), pw,
                      os.path.join(args.work, "cache")) for name, binary in (("cairn", cairn), ("restic", restic))]
        if not all(side.complete() for side in sides):
            make_tree(tree, n)
        for side in sides:
            name = side.name
            flag = "--version" if name == "cairn" else "version"
            versions[name] = run([side.binary, flag], side.env).strip().splitlines()[0]
            side.build(tree, small, args.snapshots)
            if args.clone_snapshots:
                side = side.with_clones(args.clone_snapshots, pw, cloner)
            for step, cmd in side.steps(one, out, small):
                subprocess.run(["rm", "-rf", out])
                timed(cmd, side.env)
                subprocess.run(["rm", "-rf", out])
                rows.setdefault(step, {})[(name, n)] = timed(cmd, side.env)
                w, m = rows[step][(name, n)]
                log(f"{name} {n} files: {step}: {w:.2f} s, {m:.0f} MiB")

    total = f"{args.snapshots} + {args.clone_snapshots} cloned" if args.clone_snapshots else f"{args.snapshots}"
    print(f"\n{total} snapshots; {versions.get('cairn')}; {versions.get('restic')}")
    print("wall s / peak RSS MiB, cairn then restic; speed = restic wall / cairn wall\n")
    head = " | ".join(f"{n / 1e6:g} M: cairn | restic | speed" for n in counts)
    print(f"| step | {head} |")
    print("|---|" + "---:|---:|---:|" * len(counts))
    for step, by in rows.items():
        cells = []
        for n in counts:
            (cw, cm), (rw, rm) = by[("cairn", n)], by[("restic", n)]
            cells.append(f"{cw:.2f} s / {cm:.0f} | {rw:.2f} s / {rm:.0f} | {rw / max(cw, 0.005):.1f}×")
        print(f"| {step} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
