#!/usr/bin/env bash
# Fetch restic 0.18 from Debian 13 (trixie), or with RESTIC_SUITE=sid restic
# 0.19 from Debian unstable, without touching the system's apt configuration:
# a private sources.list, state and cache under the work dir, `apt-get
# download`, then `dpkg-deb -x`.
#
# Usage: [RESTIC_SUITE=sid] benches/fetch-restic.sh [WORK_DIR]     (default: <repo>/bench-work)
# Prints the path of the restic binary on its last line of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="${1:-$here/../bench-work}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
suite="${RESTIC_SUITE:-trixie}"
case "$suite" in
    trixie) want_re='^restic 0\.18\.' ;;
    sid) want_re='^restic 0\.19\.' ;;
    *) echo "fetch-restic: RESTIC_SUITE must be trixie or sid, not $suite" >&2; exit 2 ;;
esac
# trixie keeps the path the other benchmark scripts use.
if [[ $suite == sid ]]; then dest="$work/restic-sid"; else dest="$work/restic"; fi
bin="$dest/usr/bin/restic"

log() { echo "fetch-restic: $*" >&2; }

if [[ -x "$bin" ]] && "$bin" version 2>/dev/null | grep -Eq "$want_re"; then
    log "already present: $("$bin" version)"
    echo "$bin"
    exit 0
fi

# Find the Debian mirror host the system already uses (deb822 .sources or
# one-line .list files); keep only an archive whose path ends in /debian.
mirror=""
shopt -s nullglob
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -r "$f" ]] || continue
    while read -r url; do
        url="${url%/}"
        if [[ "$url" =~ ^https?://[^/]+(/.*)?/debian$ ]]; then
            mirror="$url"
            break 2
        fi
    done < <(grep -v '^[[:space:]]*#' "$f" | grep -Eo 'https?://[^ ]+' || true)
done
shopt -u nullglob
if [[ -z "$mirror" ]]; then
    mirror="http://deb.debian.org/debian"
    log "no Debian mirror found in /etc/apt, falling back to $mirror"
fi
log "using mirror $mirror (suite $suite)"

apt_dir="$work/apt-$suite"
rm -rf "$apt_dir"
mkdir -p "$apt_dir/etc/preferences.d" "$apt_dir/state/lists/partial" \
    "$apt_dir/cache/archives/partial" "$apt_dir/dl"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb [signed-by=$keyring] $mirror $suite main" >"$apt_dir/etc/sources.list"
: >"$apt_dir/state/status"

apt_opts=(
    -o "Dir::Etc::sourcelist=$apt_dir/etc/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::Etc::preferencesparts=$apt_dir/etc/preferences.d"
    -o "Dir::State=$apt_dir/state"
    -o "Dir::State::status=$apt_dir/state/status"
    -o "Dir::Cache=$apt_dir/cache"
    -o "APT::Sandbox::User=root"
    -o "Acquire::Languages=none"
)

log "apt-get update (private lists)"
apt-get "${apt_opts[@]}" -qq update >&2
log "apt-get download restic"
(cd "$apt_dir/dl" && apt-get "${apt_opts[@]}" -qq download restic >&2)

deb=("$apt_dir"/dl/restic_*.deb)
if [[ ! -f "${deb[0]}" ]]; then
    log "download produced no restic_*.deb"
    exit 1
fi
rm -rf "$dest"
mkdir -p "$dest"
dpkg-deb -x "${deb[0]}" "$dest"

version="$("$bin" version)"
if ! grep -Eq "$want_re" <<<"$version"; then
    log "unexpected version: $version"
    exit 1
fi
log "ok: $version"
echo "$bin"
