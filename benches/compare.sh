#!/usr/bin/env bash
# Side-by-side benchmark of cairn, restic 0.19 and rustic on the "nights"
# data set. See benches/README.md. Example:
#   bash benches/compare.sh --size-mb 1000
#   bash benches/compare.sh --size-mb 100 --tools restic
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec python3 "$here/compare.py" "$@"
