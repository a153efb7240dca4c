#!/usr/bin/env bash
# Starts a throwaway Kubernetes control plane on loopback: etcd,
# kube-apiserver and a kube-controller-manager that runs only the garbage
# collector and the namespace controller. Each start is a fresh, empty cluster.
#
# Usage: start.sh STATE_DIR
# Prints the path of STATE_DIR/kubeconfig on stdout once /readyz is ok; all
# other output goes to stderr. Stop it with stop.sh STATE_DIR.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
readonly HERE
readonly CACHE="${SWITCHBOARD_TESTBED_CACHE:-${HOME}/.cache/switchboard-testbed}"
readonly READY_TIMEOUT="${SWITCHBOARD_TESTBED_READY_TIMEOUT:-60}"
# In the order they start; stop.sh stops them in reverse.
readonly COMPONENTS=(etcd kube-apiserver kube-controller-manager)

log() { printf 'testbed start: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $# -eq 1 && -n "$1" ]] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
mkdir -p "$1"
# Absolute and symlink-free: stop.sh recognises our processes by this path in
# their command lines.
STATE="$(cd "$1" && pwd -P)"
readonly STATE

# Our process for a component, if its pid file names one that is still ours.
live_pid() {
  local pidfile="${STATE}/$1.pid" pid
  [[ -f "${pidfile}" ]] || return 1
  pid="$(<"${pidfile}")"
  [[ "${pid}" =~ ^[0-9]+$ && -r "/proc/${pid}/cmdline" ]] || return 1
  # A zombie is dead; its cmdline is empty, so the check below rejects it.
  tr '\0' '\n' <"/proc/${pid}/cmdline" | grep -qF -- "${STATE}/" || return 1
  printf '%s\n' "${pid}"
}

for c in "${COMPONENTS[@]}"; do
  if live_pid "${c}" >/dev/null; then
    die "a testbed is already running in ${STATE}; run stop.sh ${STATE} first"
  fi
done

"${HERE}/build.sh"
readonly BIN="${CACHE}/bin"

# Everything below is stopped again unless the cluster becomes ready.
ready=0
on_exit() {
  if ((ready == 0)); then
    log "stopping what was started"
    "${HERE}/stop.sh" "${STATE}" >&2 || true
  fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Leftovers of an earlier run would make this a different cluster.
rm -rf "${STATE}/etcd" "${STATE}/pki" "${STATE}/apiserver"
rm -f "${STATE}"/*.pid "${STATE}/kubeconfig"
mkdir -p "${STATE}/pki" "${STATE}/apiserver"
chmod 700 "${STATE}/pki"

log "creating certificates and credentials in ${STATE}/pki"
pki="${STATE}/pki"
cat >"${pki}/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = switchboard-testbed
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
# A CA plus a leaf rather than one self-signed leaf: webpki (rustls) refuses a
# CA certificate as the server's own certificate.
token="$(openssl rand -hex 32)"
serial="$(openssl rand -hex 8)"
(
  cd "${pki}"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
  openssl req -x509 -new -config openssl.cnf -extensions ca_ext -key ca.key -sha256 -days 3650 \
    -subj /CN=switchboard-testbed-ca -out ca.crt
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key 2>/dev/null
  openssl req -new -config openssl.cnf -key server.key -subj /CN=kube-apiserver -out server.csr
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -set_serial "0x${serial}" \
    -sha256 -days 3650 -extfile openssl.cnf -extensions server_ext -out server.crt 2>/dev/null
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
  openssl pkey -in sa.key -pubout -out sa.pub
  printf '%s,admin,admin,"system:masters"\n' "${token}" >tokens.csv
)

# Ports bound on this machine in any state, IPv4 and IPv6.
used_ports() {
  local f _sl addr _rest
  for f in /proc/net/tcp /proc/net/tcp6; do
    [[ -r "${f}" ]] || continue
    while read -r _sl addr _rest; do
      [[ "${addr}" == *:* ]] && printf '%d\n' "$((16#${addr##*:}))"
    done <"${f}"
  done
}

# Random ports below Linux's ephemeral range (32768+), where outgoing
# connections would take them, and above the usual fixed service ports.
pick_ports() {
  local n="$1" used port
  used=" $(used_ports | tr '\n' ' ') "
  while ((n > 0)); do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
    [[ "${used}" == *" ${port} "* ]] && continue
    used+="${port} "
    printf '%s\n' "${port}"
    n=$((n - 1))
  done
}

# Another start.sh could pick the same free ports before either binds them:
# hold a lock from choosing the ports until the servers listen on them. The
# servers must not inherit the lock's file descriptor (hence 9>&- below).
mkdir -p "${CACHE}"
exec 9>"${CACHE}/ports.lock"
flock 9
read -r etcd_port peer_port api_port <<<"$(pick_ports 3 | tr '\n' ' ')"
log "ports: etcd ${etcd_port} (peer ${peer_port}), kube-apiserver ${api_port}"

start_component() {
  local name="$1"
  shift
  "$@" </dev/null >"${STATE}/${name}.log" 2>&1 9>&- &
  printf '%s\n' "$!" >"${STATE}/${name}.pid"
}

# Prints the tail of a log and fails, if the component has exited.
check_alive() {
  if ! live_pid "$1" >/dev/null; then
    log "$1 exited; last lines of ${STATE}/$1.log:"
    tail -n 30 "${STATE}/$1.log" >&2 || true
    exit 1
  fi
}

etcd_url="http://127.0.0.1:${etcd_port}"
peer_url="http://127.0.0.1:${peer_port}"
start_component etcd etcd \
  --name=testbed \
  --data-dir="${STATE}/etcd" \
  --listen-client-urls="${etcd_url}" \
  --advertise-client-urls="${etcd_url}" \
  --listen-peer-urls="${peer_url}" \
  --initial-advertise-peer-urls="${peer_url}" \
  --initial-cluster="testbed=${peer_url}" \
  --initial-cluster-state=new \
  --initial-cluster-token="testbed-$(openssl rand -hex 4)" \
  --logger=zap \
  --log-level=warn

# The apiserver gives up on an etcd that is not there yet.
deadline=$((SECONDS + 20))
until curl -fsS --max-time 2 "${etcd_url}/health" >/dev/null 2>&1; do
  check_alive etcd
  ((SECONDS < deadline)) || { tail -n 30 "${STATE}/etcd.log" >&2; die "etcd not healthy after 20 s"; }
  sleep 0.2
done

start_component kube-apiserver "${BIN}/kube-apiserver" \
  --etcd-servers="${etcd_url}" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --secure-port="${api_port}" \
  --insecure-port=0 \
  --cert-dir="${STATE}/apiserver" \
  --tls-cert-file="${pki}/server.crt" \
  --tls-private-key-file="${pki}/server.key" \
  --token-auth-file="${pki}/tokens.csv" \
  --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="${pki}/sa.pub" \
  --service-account-signing-key-file="${pki}/sa.key" \
  --disable-admission-plugins=ServiceAccount \
  --endpoint-reconciler-type=none \
  --service-cluster-ip-range=10.0.0.0/24 \
  --profiling=false

kubeconfig="${STATE}/kubeconfig"
ca_data="$(base64 -w0 "${pki}/ca.crt")"
(
  umask 077
  cat >"${kubeconfig}" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: switchboard-testbed
  cluster:
    server: https://127.0.0.1:${api_port}
    certificate-authority-data: ${ca_data}
users:
- name: admin
  user:
    token: ${token}
contexts:
- name: switchboard-testbed
  context:
    cluster: switchboard-testbed
    user: admin
    namespace: default
current-context: switchboard-testbed
EOF
)

# The token goes in a file, not on curl's command line, where ps shows it.
printf 'Authorization: Bearer %s\n' "${token}" >"${pki}/auth-header"
deadline=$((SECONDS + READY_TIMEOUT))
until [[ "$(curl -sS --max-time 2 --cacert "${pki}/ca.crt" -H "@${pki}/auth-header" \
  "https://127.0.0.1:${api_port}/readyz" 2>/dev/null)" == "ok" ]]; do
  check_alive etcd
  check_alive kube-apiserver
  if ((SECONDS >= deadline)); then
    log "kube-apiserver not ready after ${READY_TIMEOUT} s; last lines of ${STATE}/kube-apiserver.log:"
    tail -n 40 "${STATE}/kube-apiserver.log" >&2 || true
    exit 1
  fi
  sleep 0.3
done
exec 9>&-

# Insecure and secure serving both off (port 0): nothing needs its endpoints,
# and so it needs no delegated authentication either.
start_component kube-controller-manager "${BIN}/kube-controller-manager" \
  --kubeconfig="${kubeconfig}" \
  --controllers=garbagecollector,namespace \
  --use-service-account-credentials=false \
  --leader-elect=false \
  --port=0 \
  --secure-port=0 \
  --profiling=false
sleep 0.5
check_alive kube-controller-manager

ready=1
log "ready: https://127.0.0.1:${api_port} (logs and pid files in ${STATE})"
printf '%s\n' "${kubeconfig}"
