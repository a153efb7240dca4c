#!/usr/bin/env bash
# Stops the server start.sh started in STATE_DIR (fast shutdown). Safe to run
# again, or on a directory where nothing runs.
#
# Usage: stop.sh STATE_DIR
set -euo pipefail

[[ $# -eq 1 && -n "$1" ]] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
[[ -f "$1/data/postmaster.pid" ]] || exit 0
bin="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
as_server=()
[[ "$(id -u)" -ne 0 ]] || as_server=(runuser -u postgres --)
"${as_server[@]}" "${bin}/pg_ctl" -D "$1/data" -m fast -w -t 60 stop >/dev/null
