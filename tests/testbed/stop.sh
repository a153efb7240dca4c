#!/usr/bin/env bash
# Stops the testbed that start.sh started in STATE_DIR: exactly the processes
# named by its pid files, and only while they are still ours. Safe to run
# again, or on a directory where nothing runs.
#
# Usage: stop.sh STATE_DIR
set -euo pipefail

# Reverse start order: the clients go before the servers they talk to.
readonly COMPONENTS=(kube-controller-manager kube-apiserver etcd)
readonly TERM_WAIT="${SWITCHBOARD_TESTBED_STOP_TIMEOUT:-15}"

log() { printf 'testbed stop: %s\n' "$*" >&2; }

[[ $# -eq 1 && -n "$1" ]] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
[[ -d "$1" ]] || exit 0
STATE="$(cd "$1" && pwd -P)"
readonly STATE

# True while pid is a process that start.sh started for this STATE_DIR: a pid
# can be reused by an unrelated process once ours has gone. Every command line
# start.sh runs names a file under STATE_DIR. A zombie (exited, not yet
# reaped) has an empty cmdline and so counts as gone.
is_ours() {
  local pid="$1"
  [[ -r "/proc/${pid}/cmdline" ]] || return 1
  tr '\0' '\n' <"/proc/${pid}/cmdline" 2>/dev/null | grep -qF -- "${STATE}/"
}

# Waits up to $2 seconds for pid to be gone.
wait_gone() {
  local pid="$1" deadline=$((SECONDS + $2))
  while is_ours "${pid}"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

stop_component() {
  local name="$1" pidfile="${STATE}/$1.pid" pid
  [[ -f "${pidfile}" ]] || return 0
  pid="$(<"${pidfile}")"
  if [[ "${pid}" =~ ^[0-9]+$ ]] && is_ours "${pid}"; then
    kill -TERM "${pid}" 2>/dev/null || true
    if ! wait_gone "${pid}" "${TERM_WAIT}"; then
      log "${name} (pid ${pid}) ignored TERM for ${TERM_WAIT} s; killing it"
      kill -KILL "${pid}" 2>/dev/null || true
      wait_gone "${pid}" 5 || { log "${name} (pid ${pid}) survived KILL"; return 1; }
    fi
    log "stopped ${name} (pid ${pid})"
  fi
  rm -f "${pidfile}"
}

status=0
for c in "${COMPONENTS[@]}"; do
  stop_component "${c}" || status=1
done
exit "${status}"
