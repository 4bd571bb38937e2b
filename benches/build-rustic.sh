#!/usr/bin/env bash
# Builds rustic (the `rustic-rs` crate, 0.11.4 by default) from the Rust
# registry into <WORK_DIR>/rustic, once; the benchmarks run it when its bin
# folder is on PATH:
#   PATH=$(dirname "$(bash benches/build-rustic.sh /tmp/bw)"):$PATH bash benches/compare.sh ...
# The build takes about 20 minutes on two cores (it runs niced, one job at a
# time, so other work can go on beside it; do not time benchmarks meanwhile).
#
# Usage: [RUSTIC_VERSION=x.y.z] benches/build-rustic.sh [WORK_DIR]   (default: <repo>/bench-work)
# Prints the path of the rustic binary on its last line of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="${1:-$here/../bench-work}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
version="${RUSTIC_VERSION:-0.11.4}"
root="$work/rustic"
bin="$root/bin/rustic"

if [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -qx "rustic $version"; then
    echo "build-rustic: already present: $("$bin" --version)" >&2
    echo "$bin"
    exit 0
fi
echo "build-rustic: building rustic-rs $version into $root (about 20 minutes)" >&2
# A target folder of its own: the workspace's would mix rustic's
# dependencies into cairn's build cache.
CARGO_TARGET_DIR="$work/rustic-target" nice -n 19 \
    cargo install rustic-rs --version "$version" --locked --root "$root" -j 1 >&2
"$bin" --version >&2
echo "$bin"
