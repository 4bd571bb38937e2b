#!/usr/bin/env python3
"""Side-by-side benchmark on a source tree of many small files: cairn vs
restic (vs rustic), the small-files rows of issue 14.

The tree is generated once (deterministic from --seed): --files files
(100,000 by default) of text-like content, sizes log-normal around 6 KB
(about 600 MB in all), 25 to a folder, folders three levels deep. Each tool backs it up
into a fresh repository, backs it up again unchanged, then restores it in
full; each step is timed with /usr/bin/time (wall, CPU, peak RSS), the
restore is compared with the source, and the table gives restic's wall time
over each tool's. Warm cache; `sync` between steps. Uses compare.py's tool
drivers, so the tools run with the same options as there.

    RESTIC_SUITE=sid python3 benches/small_files.py --work /tmp/sf
"""

import argparse
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (the shared drivers)

CORPUS_WORDS = (
    "fn let mut impl struct enum match self return use pub mod crate where async await "
    "the of and to in is that for it with as was on be at by this had not are but from "
    "user billing message call session cache key value table index error result option"
).split()


def corpus(rng, size):
    """Text that compresses like source code (zstd about 3:1)."""
    out = []
    n = 0
    while n < size:
        line = " ".join(rng.choice(CORPUS_WORDS) for _ in range(rng.randint(3, 12)))
        line = "    " * rng.randint(0, 3) + line + ";\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def generate(root, files, seed):
    """The tree, unless a complete one is there already."""
    done = os.path.join(root, ".complete")
    if os.path.exists(done):
        return
    compare.rmtree(root)
    rng = random.Random(seed)
    text = corpus(rng, 4 << 20)
    compare.log(f"generating {files} files under {root}")
    for i in range(files):
        # 25 files a folder, 10 folders a level below 40 packages.
        leaf = i // 25
        d = os.path.join(root, f"pkg{leaf // 100:02d}", f"mod{leaf // 10 % 10}", f"sub{leaf % 10}")
        if i % 25 == 0:
            os.makedirs(d, exist_ok=True)
        size = min(int(rng.lognormvariate(8.2, 1.0)), 1 << 20)
        at = rng.randrange(0, len(text) - size) if size < len(text) else 0
        # A unique first line: no two files are alike.
        body = f"// file {i} seed {seed}\n".encode() + text[at:at + size]
        with open(os.path.join(d, f"f{i:06d}.rs"), "wb") as f:
            f.write(body)
    open(done, "w").close()


def verify(root, expected):
    """Whether the restored tree at root has exactly the source's files."""
    if not os.path.isdir(root):
        return "MISMATCH: restored tree not found"
    got = compare.tree_manifest(root)
    if got == expected:
        return f"ok ({len(got)} files identical)"
    missing = sum(1 for p in expected if p not in got)
    differ = sum(1 for p in expected if p in got and got[p] != expected[p])
    return f"MISMATCH: {missing} missing, {differ} differ, {len(got) - len(expected) + missing} extra"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tools", default="cairn,restic")
    ap.add_argument("--work", default=os.path.join(compare.ROOT, "bench-work-small"))
    args = ap.parse_args()
    work = os.path.abspath(args.work)
    os.makedirs(os.path.join(work, "logs"), exist_ok=True)
    src = os.path.join(work, "src")
    generate(src, args.files, args.seed)
    total = compare.dir_bytes(src)
    compare.log(f"source: {args.files} files, {total / 1e6:.0f} MB")
    with open(os.path.join(work, "password"), "w") as f:
        f.write(compare.PASSWORD)

    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(compare.ROOT, "target"))
    tools = []
    for name in [t.strip() for t in args.tools.split(",") if t.strip()]:
        if name == "cairn":
            tools.append(compare.Cairn(os.path.join(target, "release", "cairn"), work))
        elif name == "restic":
            env = dict(os.environ)
            env.setdefault("RESTIC_SUITE", "sid")
            r = subprocess.run(["bash", os.path.join(compare.HERE, "fetch-restic.sh"), work],
                               stdout=subprocess.PIPE, text=True, env=env)
            if r.returncode != 0 or not r.stdout.strip():
                sys.exit("could not fetch restic (benches/fetch-restic.sh)")
            tools.append(compare.Restic(r.stdout.strip().splitlines()[-1], work))
        elif name == "rustic":
            tools.append(compare.Rustic("rustic", work))
        else:
            sys.exit(f"unknown tool {name!r}")

    compare.empty_trash(work)
    expected = compare.tree_manifest(src)
    steps = ["first backup", "unchanged backup", "restore (full)"]
    results = {}
    for t in tools:
        compare.rmtree(t.repo)
        compare.rmtree(t.cache)
        os.makedirs(os.path.dirname(t.repo), exist_ok=True)
        t.init()
        for step in steps[:2]:
            compare.warm(src)
            results[(t.name, step)] = t.backup(step, src)
        out = os.path.join(work, "restore", t.name)
        compare.set_aside(out, work)
        os.makedirs(out)
        m = t.restore(steps[2], out)
        m.verify = verify(os.path.join(out, src.lstrip("/")), expected) if m.ok else "not run"
        results[(t.name, steps[2])] = m
        # Deleted when the run ends, not before the next tool's restore
        # (compare.set_aside says why).
        compare.set_aside(out, work)
    compare.empty_trash(work)

    print(f"\n{args.files} files, {total / 1e6:.0f} MB; versions: "
          + ", ".join(f"{t.name} {t.version()}" for t in tools) + "\n")
    head = "| step | " + " | ".join(f"{t.name} wall s | {t.name} RSS MiB" for t in tools)
    print(head + " | restic / cairn |")
    print("|---" * (1 + 2 * len(tools)) + "|---:|")
    for step in steps:
        cells = []
        for t in tools:
            m = results[(t.name, step)]
            cells += [compare.fmt(m.wall, 2) if m.ok else f"failed ({m.note})",
                      compare.fmt(m.rss_kb and m.rss_kb / 1024, 0)]
        r, c = results.get(("restic", step)), results.get(("cairn", step))
        ratio = f"{r.wall / c.wall:.2f}x" if r and c and r.ok and c.ok and c.wall else "-"
        print(f"| {step} | " + " | ".join(cells) + f" | {ratio} |")
    for t in tools:
        m = results[(t.name, steps[2])]
        print(f"\n{t.name} restore: {m.verify}; repository {m.repo_bytes and m.repo_bytes / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
