#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server from Debian's `postgresql` package in
# STATE_DIR: initdb and pg_ctl, no TCP port (a Unix socket in STATE_DIR, so
# suites running at once never fight over a port), run as the `postgres` user
# when this runs as root (the server refuses to run as root). Prints the
# connection string of the `postgres` superuser on stdout; stop.sh stops it.
#
# With --tls, the server also listens on 127.0.0.1, on a free port (the one
# printed), with TLS: CERT_DIR holds server.crt and server.key (copied into
# STATE_DIR, the key 0600 and owned by the server's user), and connections over
# TCP must use TLS and a password (pg_hba.conf: `hostssl ... scram-sha-256`
# and nothing else but the socket, which trusts every local user).
#
# Usage: start.sh STATE_DIR [--tls CERT_DIR]
set -euo pipefail

log() { printf 'postgres start: %s\n' "$*" >&2; }

usage() { echo "usage: $0 STATE_DIR [--tls CERT_DIR]" >&2; exit 2; }
[[ $# -ge 1 && -n "$1" ]] || usage
certs=""
if [[ $# -eq 3 && "$2" == "--tls" && -n "$3" ]]; then
  certs="$(cd "$3" && pwd -P)"
elif [[ $# -ne 1 ]]; then
  usage
fi
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
options="-c unix_socket_directories='${STATE}' -c max_connections=400 -c shared_buffers=64MB"

if [[ -z "${certs}" ]]; then
  "${as_server[@]}" "${bin}/pg_ctl" -D "${STATE}/data" -l "${STATE}/server.log" -o "${options} -c listen_addresses=''" -w -t 60 start >/dev/null \
    || { log "the server did not start:"; tail -n 20 "${STATE}/server.log" >&2; exit 1; }
  printf 'host=%s port=5432 user=postgres dbname=postgres\n' "${STATE}"
  exit 0
fi

owner=()
[[ "$(id -u)" -ne 0 ]] || owner=(-o postgres -g postgres)
install "${owner[@]}" -m 0644 "${certs}/server.crt" "${STATE}/server.crt"
install "${owner[@]}" -m 0600 "${certs}/server.key" "${STATE}/server.key"
cat >"${STATE}/data/pg_hba.conf" <<'HBA'
local all all trust
hostssl all all 127.0.0.1/32 scram-sha-256
HBA
[[ "$(id -u)" -ne 0 ]] || chown postgres: "${STATE}/data/pg_hba.conf"
options="${options} -c listen_addresses='127.0.0.1' -c ssl=on -c ssl_cert_file='${STATE}/server.crt' -c ssl_key_file='${STATE}/server.key'"
# Suites running at once each pick a port; the server binding it is the test
# that it is free, so a port taken in the meantime is tried again with another.
for _ in 1 2 3 4 5 6 7 8; do
  port=$((20000 + RANDOM % 30000))
  rm -f "${STATE}/server.log"
  if "${as_server[@]}" "${bin}/pg_ctl" -D "${STATE}/data" -l "${STATE}/server.log" -o "${options} -c port=${port}" -w -t 60 start >/dev/null; then
    printf 'host=%s port=%s user=postgres dbname=postgres\n' "${STATE}" "${port}"
    exit 0
  fi
  grep -q 'could not bind' "${STATE}/server.log" || break
done
log "the server did not start:"
tail -n 20 "${STATE}/server.log" >&2
exit 1
