#!/usr/bin/env bash
# The main job, end to end on a fresh machine: build cairn, create a
# local-folder repository, back up a real folder twice, restore it, and
# prove the restore is bit-identical. Usage: scripts/demo.sh [FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "cargo is needed (https://rustup.rs)" >&2
    exit 1
fi
echo "==> building cairn (release)"
# Cargo says where it put the binary: CARGO_TARGET_DIR, a target-dir or a
# default target in a cargo config all move it away from ./target/release.
BUILD=$(cargo build --release -q -p cairn-cli --bin cairn --message-format=json-render-diagnostics)
CAIRN=$(sed -n 's/.*"executable":"\([^"]*\/cairn\)".*/\1/p' <<<"$BUILD" | tail -n 1)
if [[ ! -x $CAIRN ]]; then
    echo "cargo build did not say where it put the cairn binary" >&2
    exit 1
fi

WORK="$(mktemp -d -t cairn-demo.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
SRC="${1:-$PWD/engine}"
SRC="$(cd "$SRC" && pwd)"
export CAIRN_REPOSITORY="$WORK/repo"
# The password comes from a file, never from an argument.
head -c 24 /dev/urandom | base64 > "$WORK/password"
chmod 600 "$WORK/password"
export CAIRN_PASSWORD_FILE="$WORK/password"

echo "==> cairn init  ($CAIRN_REPOSITORY)"
"$CAIRN" init
echo "==> cairn backup $SRC"
"$CAIRN" backup "$SRC" --tag demo
echo "==> cairn backup $SRC  (again: unchanged files are not read)"
"$CAIRN" backup "$SRC" --tag demo
echo "==> cairn snapshots"
"$CAIRN" snapshots
echo "==> cairn restore latest --target $WORK/restore --verify"
"$CAIRN" restore latest --target "$WORK/restore" --verify
echo "==> comparing the restore with the source"
diff -r "$SRC" "$WORK/restore$SRC"
echo "==> cairn check --read-data"
"$CAIRN" check --read-data
echo
echo "OK: $SRC was backed up, restored bit-identical, and the repository checked clean."
