#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server from Debian's `postgresql` package in
# STATE_DIR: initdb and pg_ctl, no TCP port (a Unix socket in STATE_DIR, so
# suites running at once never fight over a port), run as the `postgres` user
# when this runs as root (the server refuses to run as root). Prints the
# connection string of the `postgres` superuser on stdout; stop.sh stops it.
#
# Usage: start.sh STATE_DIR
set -euo pipefail

log() { printf 'postgres start: %s\n' "$*" >&2; }

[[ $# -eq 1 && -n "$1" ]] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
mkdir -p "$1"
STATE="$(cd "$1" && pwd -P)"
readonly STATE

# The newest server the package installed (Debian keeps each major version in
# its own folder, off PATH).
bin="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
[[ -n "${bin}" && -x "${bin}/initdb" ]] || { log "no PostgreSQL server found under /usr/lib/postgresql (apt-get install postgresql)"; exit 1; }

as_server=()
if [[ "$(id -u)" -eq 0 ]]; then
  chown postgres: "${STATE}"
  as_server=(runuser -u postgres --)
fi

"${as_server[@]}" "${bin}/initdb" -D "${STATE}/data" -U postgres -A trust -E UTF8 --no-locale >"${STATE}/initdb.log" 2>&1 \
  || { log "initdb failed:"; cat "${STATE}/initdb.log" >&2; exit 1; }
# Connections: every gateway of the suites running at once holds seven.
options="-c listen_addresses='' -c unix_socket_directories='${STATE}' -c max_connections=400 -c shared_buffers=64MB"
"${as_server[@]}" "${bin}/pg_ctl" -D "${STATE}/data" -l "${STATE}/server.log" -o "${options}" -w -t 60 start >/dev/null \
  || { log "the server did not start:"; tail -n 20 "${STATE}/server.log" >&2; exit 1; }
printf 'host=%s port=5432 user=postgres dbname=postgres\n' "${STATE}"
