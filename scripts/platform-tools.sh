#!/usr/bin/env bash
# Installs the data-platform servers the source tests run against, from the
# Debian registry, when they are missing: redis-server and redis-cli (Redis
# source), PostgreSQL (SQL dump streams), git (Git bundles). Each test starts
# its own throwaway server on 127.0.0.1 and a free port and stops it after.
set -euo pipefail

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v git >/dev/null || need+=(git)
command -v fusermount3 >/dev/null || need+=(fuse3)
if ((${#need[@]} == 0)); then
    echo "platform tools present: redis-server, PostgreSQL, git, fusermount3"
    exit 0
fi
echo "installing from Debian: ${need[*]}"
if [[ $(id -u) != 0 ]]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The package's own service must not start: the tests run their own servers.
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts redis-server as a service on 127.0.0.1:6379 after install;
# nothing of ours uses that port, but stop it so it costs nothing.
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
    $SUDO systemctl stop redis-server || true
fi
pkill -f 'redis-server 127.0.0.1:6379' 2>/dev/null || true
echo "installed: ${need[*]}"
