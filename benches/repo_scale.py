#!/usr/bin/env python3
"""Costs that grow with the repository (issue 14): time and peak RSS of the
everyday commands on generated repositories of 1 M to 10 M data blobs and
10,000 snapshots, as a curve.

Each repository comes from `gen-repo` (64-byte blobs, 16 to a pack: the pack
count of 1 MiB chunks in 16 MiB packs), kept under --work and reused. Every
step runs once untimed (so the repository's objects are in the page cache,
as on a machine that backs up nightly) and is then timed once:

- `snapshots`        list 10,000 snapshots
- `dump one file`    open, load the index, read one file of the newest snapshot
- `restore one file` the same file through `restore --include`
- `unchanged backup` a small folder backed up again (its parent is found
                     among 10,000 snapshots; the index is loaded)
- `check`            structure only (every index object, tree and snapshot)

No restic column: restic cannot read a generated repository, and building a
restic repository of this shape (10 M blobs, 10,000 snapshots) by backing
up real files takes hours on this machine.

Usage: python3 benches/repo_scale.py [--blobs 1000000,3000000,10000000]
           [--snapshots 10000] [--work DIR] [--no-build]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    print(f"repo-scale: {msg}", file=sys.stderr, flush=True)


def timed(cmd, env):
    """Runs cmd under /usr/bin/time; returns (wall s, peak RSS MiB)."""
    with tempfile.NamedTemporaryFile("r") as t:
        r = subprocess.run(["/usr/bin/time", "-o", t.name, "-f", "%e %M"] + cmd, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
        wall, rss = t.read().split()[-2:]
    return float(wall), int(rss) / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blobs", default="1000000,3000000,10000000", help="comma-separated blob counts")
    ap.add_argument("--snapshots", type=int, default=10000)
    ap.add_argument("--work", default=os.path.join(ROOT, "bench-work", "repo-scale"))
    ap.add_argument("--no-build", action="store_true", help="use the binaries in target/release")
    args = ap.parse_args()
    counts = [int(c) for c in args.blobs.split(",")]
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    if not args.no_build:
        log("cargo build --release -p cairn-cli -p cairn-benches")
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "cairn-cli", "-p", "cairn-benches"],
                       cwd=ROOT, check=True)
    cairn = os.path.join(target, "release", "cairn")
    gen = os.path.join(target, "release", "gen-repo")
    os.makedirs(args.work, exist_ok=True)
    pw = os.path.join(args.work, "password")
    if not os.path.exists(pw):
        with open(pw, "w") as f:
            f.write("repo-scale\n")
    env = dict(os.environ, CAIRN_PASSWORD_FILE=pw)
    env.pop("CAIRN_PASSWORD", None)
    # The small folder backed up again on every repository: the format spec.
    small = os.path.join(ROOT, "format-spec")

    rows = {}
    for n in counts:
        repo = os.path.join(args.work, f"r{n}-s{args.snapshots}")
        if not os.path.exists(os.path.join(repo, "config")):
            log(f"generating {repo} (gen-repo --blobs {n} --snapshots {args.snapshots} --blobs-per-pack 16)")
            subprocess.run([gen, "--repo", repo, "--blobs", str(n), "--snapshots", str(args.snapshots),
                            "--blobs-per-pack", "16"], env=env, check=True, stdout=subprocess.DEVNULL)
        c = [cairn, "-r", repo, "-q"]
        # The newest generated snapshot, by id: once the small folder is
        # backed up, `latest` may be that backup instead.
        snaps = json.loads(subprocess.run([cairn, "-r", repo, "--json", "snapshots"], env=env, check=True,
                                          stdout=subprocess.PIPE, text=True).stdout)
        newest = max((s for s in snaps if s["host"] == "gen-repo"), key=lambda s: s["time"])["id"]
        listing = subprocess.run([cairn, "-r", repo, "ls", newest], env=env, check=True,
                                 stdout=subprocess.PIPE, text=True).stdout.split()
        one = next(p for p in reversed(listing) if p.endswith(".db"))
        out = os.path.join(args.work, "restored")
        subprocess.run(c + ["backup", "--host", "repo-scale", small], env=env, check=True)
        steps = [
            ("snapshots", c + ["snapshots"]),
            ("dump one file", c + ["dump", newest, one]),
            ("restore one file", c + ["restore", newest, "--include", one, "--target", out]),
            ("unchanged backup", c + ["backup", "--host", "repo-scale", small]),
            ("check", c + ["check"]),
        ]
        for name, cmd in steps:
            subprocess.run(["rm", "-rf", out])
            timed(cmd, env)
            subprocess.run(["rm", "-rf", out])
            rows.setdefault(name, {})[n] = timed(cmd, env)
            log(f"{n} blobs: {name}: {rows[name][n][0]:.2f} s, {rows[name][n][1]:.0f} MiB")

    head = " | ".join(f"{n / 1e6:g} M blobs" for n in counts)
    print(f"\n{args.snapshots} snapshots; wall s / peak RSS MiB\n")
    print(f"| step | {head} | RSS growth per added blob |")
    print("|---|" + "---:|" * (len(counts) + 1))
    for name, by_n in rows.items():
        cells = " | ".join(f"{by_n[n][0]:.2f} s / {by_n[n][1]:.0f}" for n in counts)
        lo, hi = counts[0], counts[-1]
        per = (by_n[hi][1] - by_n[lo][1]) * 1024 * 1024 / (hi - lo) if hi > lo else 0.0
        print(f"| {name} | {cells} | {per:.1f} B |")


if __name__ == "__main__":
    main()
