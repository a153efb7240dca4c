#!/usr/bin/env bash
# Takes the server start.sh started in STATE_DIR away, as a crash or a failover does: stopped at
# once (immediate mode: no checkpoint, clients cut off), kept down for SECONDS, then started again
# with the options it had (pg_ctl restart reads them from postmaster.opts).
#
# Usage: bounce.sh STATE_DIR SECONDS
set -euo pipefail

[[ $# -eq 2 && -f "$1/data/postmaster.pid" ]] || { echo "usage: $0 STATE_DIR SECONDS (a running server)" >&2; exit 2; }
bin="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
as_server=()
[[ "$(id -u)" -ne 0 ]] || as_server=(runuser -u postgres --)
"${as_server[@]}" "${bin}/pg_ctl" -D "$1/data" -m immediate -w -t 60 stop >/dev/null
sleep "$2"
"${as_server[@]}" "${bin}/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 60 restart >/dev/null 2>&1 \
  || { echo "bounce: the server did not start again:" >&2; tail -n 20 "$1/server.log" >&2; exit 1; }
