#!/usr/bin/env bash
# Prism (@stoplight/prism-cli) for the contract tests: installs a pinned copy, and starts one
# validating proxy per provider document in front of an upstream (the simulator).
#
#   tests/contract/prism.sh install
#       Installs Prism (the exact tree in package-lock.json beside this script) into
#       ${SWITCHBOARD_PRISM_CACHE:-$HOME/.cache/switchboard-prism}/<hash of the pin>/ unless it is
#       there already, installing Debian's nodejs and npm first when npm is missing, and fetches
#       Twilio's documents (below) into the same cache. Prints the path of Prism's entry script.
#   tests/contract/prism.sh check
#       Exits 0 and prints the entry script's path when Prism (and, unless the full documents are
#       used, Twilio's documents) are installed, 1 otherwise; never installs anything (tests use it
#       to decide whether they can run).
#   tests/contract/prism.sh start STATE_DIR UPSTREAM_URL
#       Installs when needed, then starts `prism proxy --errors` for each document below on a free
#       loopback port, all forwarding to UPSTREAM_URL, and says on stderr which file each reads.
#       Waits until every proxy answers, then writes STATE_DIR/endpoints.env
#       (NAME=http://127.0.0.1:PORT lines) and prints its path. Logs go to STATE_DIR/<name>.log,
#       process ids to STATE_DIR/<name>.pid. With SWITCHBOARD_PRISM_WATCH_PID set, a watchdog stops
#       the proxies once that process is gone; with SWITCHBOARD_PRISM_ONLY="name ..." only those
#       proxies (names below) are started.
#   tests/contract/prism.sh stop STATE_DIR
#       Stops exactly the processes recorded in STATE_DIR.
#
# The documents (SWITCHBOARD_PRISM_DOCUMENTS):
#   packaged (the default; what a fresh clone has): LINE's is the committed extract
#       tests/contract/extracts/line/messaging-api.yml (no registry publishes LINE's documents;
#       tests/contract/extract.rs writes the extract and checks it against the full document);
#       Twilio's come from the npm package pinned below, fetched once into the cache.
#   full: the providers' full documents from
#       ${SWITCHBOARD_PROVIDER_SPECS:-<repo>/../shared/provider-specs}.
# README.md beside this script describes how Prism reports violations.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
cache_root="${SWITCHBOARD_PRISM_CACHE:-${HOME}/.cache/switchboard-prism}"
start_timeout="${SWITCHBOARD_PRISM_START_TIMEOUT:-120}"

# Oldest Node.js the pinned tree supports (its packages' "engines"); Debian 12 ships 18.20.4.
min_node="18.20.1"

# One proxy per document: Prism reads one document per process, and it routes by path alone
# (a document's or a path's `servers` are only checked when a request carries `?__server=`).
# NAME|document (its path among the full documents)|endpoints.env keys it serves
proxies=(
  "line|line/messaging-api.yml|LINE_API LINE_DATA_API"
  "twilio-api|twilio/twilio_api_v2010.yaml|TWILIO_API"
  "twilio-content|twilio/twilio_content_v1.yaml|TWILIO_CONTENT"
  "twilio-messaging-v1|twilio/twilio_messaging_v1.yaml|TWILIO_MESSAGING_V1"
  "twilio-messaging-v2|twilio/twilio_messaging_v2.yaml|TWILIO_MESSAGING_V2"
)

# Twilio's OpenAPI documents (twilio/twilio-oai), as the npm package below ships them under
# twilio-oai/spec/yaml/. Only its tarball is fetched (`npm pack`, not installed: its dependencies
# are an MCP server the tests do not run), and its sha512 must be the pinned one.
twilio_package="@twilio-alpha/mcp"
twilio_version="0.7.0"
twilio_integrity="sha512-YsUde1pMXwqHm8Cvq9JdtsyvclVCC/f/V+FmxTNN04u5Qt5aapkbQgcfqBYQ0xcmvATBNswgPDo3MPVaCtZK8Q=="

documents_mode="${SWITCHBOARD_PRISM_DOCUMENTS:-packaged}"

log() { echo "prism.sh: $*" >&2; }
die() {
  log "$*"
  exit 1
}

case "${documents_mode}" in
  packaged | full) ;;
  *) die "SWITCHBOARD_PRISM_DOCUMENTS must be packaged or full, not '${documents_mode}'" ;;
esac

usage() {
  sed -n '2,33p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# "a.b.c" >= "x.y.z"
version_at_least() {
  local IFS=.
  # shellcheck disable=SC2206 # split on dots on purpose
  local have=($1) want=($2) i
  for i in 0 1 2; do
    if ((${have[i]:-0} > ${want[i]:-0})); then return 0; fi
    if ((${have[i]:-0} < ${want[i]:-0})); then return 1; fi
  done
  return 0
}

ensure_node() {
  if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "npm is missing and there is no apt-get to install it"
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
      command -v sudo >/dev/null 2>&1 || die "npm is missing; installing it needs root"
      sudo=(sudo)
    fi
    log "installing Debian's nodejs and npm"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq >&2
    "${sudo[@]}" apt-get install -y -qq nodejs npm >&2
  fi
  local version
  version="$(node --version)"
  version="${version#v}"
  version_at_least "${version}" "${min_node}" ||
    die "Node.js ${version} is too old for the pinned Prism (needs >= ${min_node})"
}

# The install directory of the pinned tree: a new pin gets a new directory.
install_dir() {
  local hash
  hash="$(cat "${here}/package.json" "${here}/package-lock.json" | sha256sum)"
  echo "${cache_root}/${hash:0:16}"
}

prism_entry() {
  echo "$(install_dir)/node_modules/@stoplight/prism-cli/dist/index.js"
}

installed() {
  [[ -f "$(install_dir)/.installed" && -f "$(prism_entry)" ]] && command -v node >/dev/null 2>&1
}

# Where the pinned Twilio package's documents are unpacked; a new pin gets a new directory.
twilio_dir() {
  local hash
  hash="$(echo "${twilio_package}@${twilio_version} ${twilio_integrity}" | sha256sum)"
  echo "${cache_root}/twilio-oai/${twilio_version}-${hash:0:16}"
}

twilio_installed() {
  [[ -f "$(twilio_dir)/.installed" ]]
}

install_twilio() {
  local dir
  dir="$(twilio_dir)"
  twilio_installed && return 0
  ensure_node
  mkdir -p "${cache_root}/twilio-oai"
  local tmp
  tmp="$(mktemp -d "${cache_root}/twilio-oai/.install.XXXXXX")"
  log "fetching ${twilio_package}@${twilio_version} (Twilio's OpenAPI documents) from the npm registry"
  local tarball integrity
  # npm pack prints the tarball's file name.
  if ! tarball="$(cd "${tmp}" && npm pack --ignore-scripts --silent "${twilio_package}@${twilio_version}")" ||
    [[ ! -f "${tmp}/${tarball}" ]]; then
    rm -rf "${tmp}"
    die "npm pack ${twilio_package}@${twilio_version} failed"
  fi
  tarball="${tmp}/${tarball}"
  integrity="$(node -e '
    const data = require("fs").readFileSync(process.argv[1]);
    console.log("sha512-" + require("crypto").createHash("sha512").update(data).digest("base64"));' "${tarball}")"
  if [[ "${integrity}" != "${twilio_integrity}" ]]; then
    rm -rf "${tmp}"
    die "${twilio_package}@${twilio_version}: the tarball's integrity is ${integrity}, not the pinned ${twilio_integrity}"
  fi
  if ! tar -xzf "${tarball}" -C "${tmp}" --strip-components=1 package/twilio-oai/spec/yaml; then
    rm -rf "${tmp}"
    die "${twilio_package}@${twilio_version} has no twilio-oai/spec/yaml/"
  fi
  rm -f "${tarball}"
  local entry_spec name doc
  for entry_spec in "${proxies[@]}"; do
    IFS='|' read -r name doc _ <<<"${entry_spec}"
    [[ "${doc}" != twilio/* || -f "${tmp}/twilio-oai/spec/yaml/${doc#twilio/}" ]] || {
      rm -rf "${tmp}"
      die "${twilio_package}@${twilio_version} has no twilio-oai/spec/yaml/${doc#twilio/} (for ${name})"
    }
  done
  touch "${tmp}/.installed"
  if [[ -d "${dir}" && ! -f "${dir}/.installed" ]]; then
    rm -rf "${dir}"
  fi
  if ! mv -T "${tmp}" "${dir}" 2>/dev/null; then
    rm -rf "${tmp}"
    [[ -f "${dir}/.installed" ]] || die "could not move Twilio's documents into ${dir}"
  fi
  log "Twilio's documents from ${twilio_package}@${twilio_version} are in ${dir}/twilio-oai/spec/yaml"
}

cmd_check() {
  if ! installed; then
    log "Prism is not installed in $(install_dir); run tests/contract/prism.sh install"
    return 1
  fi
  if [[ "${documents_mode}" == packaged ]] && ! twilio_installed; then
    log "Twilio's documents (${twilio_package}@${twilio_version}) are not in $(twilio_dir); run tests/contract/prism.sh install"
    return 1
  fi
  prism_entry
}

cmd_install() {
  [[ "${documents_mode}" == full ]] || install_twilio
  local dir
  dir="$(install_dir)"
  if installed; then
    prism_entry
    return 0
  fi
  ensure_node
  mkdir -p "${cache_root}"
  local tmp
  tmp="$(mktemp -d "${cache_root}/.install.XXXXXX")"
  cp "${here}/package.json" "${here}/package-lock.json" "${tmp}/"
  log "installing Prism into ${dir}"
  # The lock file pins the whole tree (npm ci installs exactly it); --engine-strict refuses a
  # Node.js that a pinned package does not support.
  if ! (cd "${tmp}" && npm ci --engine-strict --ignore-scripts --omit=dev --no-audit --no-fund \
    --loglevel=error >&2); then
    rm -rf "${tmp}"
    die "npm ci failed"
  fi
  local version
  version="$(node "${tmp}/node_modules/@stoplight/prism-cli/dist/index.js" --version)" ||
    die "the installed Prism does not run"
  touch "${tmp}/.installed"
  # A directory without the marker is a broken earlier install.
  if [[ -d "${dir}" && ! -f "${dir}/.installed" ]]; then
    rm -rf "${dir}"
  fi
  # Another install may have finished first; either copy is the same tree.
  if ! mv -T "${tmp}" "${dir}" 2>/dev/null; then
    rm -rf "${tmp}"
    [[ -f "${dir}/.installed" ]] || die "could not move the install into ${dir}"
  fi
  log "Prism ${version} installed"
  prism_entry
}

specs_dir() {
  local dir="${SWITCHBOARD_PROVIDER_SPECS:-${repo}/../shared/provider-specs}"
  [[ -d "${dir}" ]] ||
    die "SWITCHBOARD_PRISM_DOCUMENTS=full, but there are no provider documents at ${dir} (set SWITCHBOARD_PROVIDER_SPECS, or check out shared/ beside the repository)"
  (cd "${dir}" && pwd)
}

# The file Prism reads for a document (its path among the full documents), and on stderr which
# source that is.
document_file() {
  local name="$1" doc="$2" file
  case "${documents_mode}:${doc}" in
    full:*)
      file="$(specs_dir)/${doc}"
      log "${name}: the full document ${file}"
      ;;
    *:line/*)
      file="${here}/extracts/${doc}"
      log "${name}: the committed extract tests/contract/extracts/${doc} (of LINE's ${doc#line/})"
      ;;
    *:twilio/*)
      file="$(twilio_dir)/twilio-oai/spec/yaml/${doc#twilio/}"
      log "${name}: ${doc#twilio/} from the npm package ${twilio_package}@${twilio_version}"
      ;;
    *) die "${name}: no packaged source for ${doc}" ;;
  esac
  [[ -f "${file}" ]] || die "missing provider document ${file}"
  echo "${file}"
}

# N distinct free loopback ports, held open together so they differ.
free_ports() {
  node -e '
    const net = require("net");
    const n = Number(process.argv[1]);
    const servers = [];
    let ready = 0;
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      servers.push(s);
      s.listen(0, "127.0.0.1", () => {
        if (++ready === n) {
          console.log(servers.map((x) => x.address().port).join(" "));
          servers.forEach((x) => x.close());
        }
      });
    }' "$1"
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Whether the process recorded in a pid file is still the one this script started.
recorded_alive() {
  local pid="$1" marker="$2"
  [[ -r "/proc/${pid}/cmdline" ]] && tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -qF -- "${marker}"
}

cmd_start() {
  (($# == 2)) || usage
  local state="$1" upstream="$2"
  [[ "${upstream}" =~ ^https?:// ]] || die "UPSTREAM_URL must be an http(s) URL, got '${upstream}'"
  mkdir -p "${state}"
  state="$(cd "${state}" && pwd)"
  local file entry_spec name doc
  for file in "${state}"/*.pid; do
    [[ -f "${file}" ]] || continue
    if recorded_alive "$(<"${file}")" "prism-cli/dist/index.js"; then
      die "${state} has running proxies; run 'prism.sh stop ${state}' first"
    fi
    rm -f "${file}"
  done
  if [[ -n "${SWITCHBOARD_PRISM_ONLY:-}" ]]; then
    local wanted=() only
    for entry_spec in "${proxies[@]}"; do
      for only in ${SWITCHBOARD_PRISM_ONLY}; do
        [[ "${entry_spec%%|*}" == "${only}" ]] && wanted+=("${entry_spec}")
      done
    done
    ((${#wanted[@]})) || die "SWITCHBOARD_PRISM_ONLY='${SWITCHBOARD_PRISM_ONLY}' names no proxy"
    proxies=("${wanted[@]}")
  fi
  local entry
  entry="$(cmd_install)"
  ensure_node
  rm -f "${state}/endpoints.env"

  local -A file_of=()
  for entry_spec in "${proxies[@]}"; do
    IFS='|' read -r name doc _ <<<"${entry_spec}"
    file_of[${name}]="$(document_file "${name}" "${doc}")"
  done

  local -A port_of=()
  local attempt ports i pid began
  began="$(date +%s)"
  for attempt in 1 2 3; do
    # (Re)start every proxy that is not up; a port taken between probing and binding is retried.
    local pending=()
    for entry_spec in "${proxies[@]}"; do
      IFS='|' read -r name doc _ <<<"${entry_spec}"
      [[ -f "${state}/${name}.pid" ]] || pending+=("${entry_spec}")
    done
    ((${#pending[@]})) || break
    read -r -a ports <<<"$(free_ports "${#pending[@]}")"
    i=0
    for entry_spec in "${pending[@]}"; do
      IFS='|' read -r name doc _ <<<"${entry_spec}"
      local port="${ports[i]}"
      i=$((i + 1))
      node "${entry}" proxy --errors --host 127.0.0.1 --port "${port}" \
        "${file_of[${name}]}" "${upstream}" >"${state}/${name}.log" 2>&1 </dev/null &
      echo "$!" >"${state}/${name}.pid"
      port_of[${name}]="${port}"
    done
    # Wait for every started proxy to listen, or to die.
    for entry_spec in "${pending[@]}"; do
      IFS='|' read -r name doc _ <<<"${entry_spec}"
      pid="$(<"${state}/${name}.pid")"
      while ! port_open "${port_of[${name}]}"; do
        if ! kill -0 "${pid}" 2>/dev/null; then
          wait "${pid}" 2>/dev/null || true
          rm -f "${state}/${name}.pid"
          if grep -q EADDRINUSE "${state}/${name}.log" && ((attempt < 3)); then
            log "${name}: port ${port_of[${name}]} was taken; retrying"
            break
          fi
          log "${name} exited before listening; its log:"
          tail -n 30 "${state}/${name}.log" >&2 || true
          cmd_stop "${state}"
          exit 1
        fi
        if (($(date +%s) - began > start_timeout)); then
          log "${name} did not listen within ${start_timeout}s; its log:"
          tail -n 30 "${state}/${name}.log" >&2 || true
          cmd_stop "${state}"
          exit 1
        fi
        sleep 0.1
      done
    done
  done

  local keys key tmp_env="${state}/endpoints.env.tmp"
  {
    echo "# Written by tests/contract/prism.sh start; Prism proxies (--errors) in front of ${upstream}"
    for entry_spec in "${proxies[@]}"; do
      IFS='|' read -r name doc keys <<<"${entry_spec}"
      [[ -f "${state}/${name}.pid" ]] || die "${name} could not be started"
      for key in ${keys}; do
        echo "${key}=http://127.0.0.1:${port_of[${name}]}"
      done
    done
  } >"${tmp_env}"
  mv "${tmp_env}" "${state}/endpoints.env"

  if [[ -n "${SWITCHBOARD_PRISM_WATCH_PID:-}" ]]; then
    local watched="${SWITCHBOARD_PRISM_WATCH_PID}"
    # Detached from this script's output so that a caller reading it to the end is not held.
    (
      while kill -0 "${watched}" 2>/dev/null && compgen -G "${state}/*.pid" >/dev/null; do
        sleep 1
      done
      cmd_stop "${state}" 2>/dev/null || true
    ) </dev/null >/dev/null 2>&1 &
    disown
  fi
  log "started ${#proxies[@]} proxies in $(($(date +%s) - began))s; endpoints in ${state}/endpoints.env"
  echo "${state}/endpoints.env"
}

cmd_stop() {
  (($# == 1)) || usage
  local state="$1" file pid
  [[ -d "${state}" ]] || return 0
  local stopping=()
  for file in "${state}"/*.pid; do
    [[ -f "${file}" ]] || continue
    pid="$(<"${file}")"
    if [[ "${pid}" =~ ^[0-9]+$ ]] && recorded_alive "${pid}" "prism-cli/dist/index.js"; then
      kill -TERM "${pid}" 2>/dev/null || true
      stopping+=("${pid}")
    fi
    rm -f "${file}"
  done
  local waited=0
  for pid in "${stopping[@]}"; do
    while recorded_alive "${pid}" "prism-cli/dist/index.js" && ((waited < 50)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    if recorded_alive "${pid}" "prism-cli/dist/index.js"; then
      kill -KILL "${pid}" 2>/dev/null || true
    fi
  done
}

case "${1:-}" in
  check)
    shift
    (($# == 0)) || usage
    cmd_check
    ;;
  install)
    shift
    (($# == 0)) || usage
    cmd_install
    ;;
  start)
    shift
    cmd_start "$@"
    ;;
  stop)
    shift
    cmd_stop "$@"
    ;;
  *) usage ;;
esac
