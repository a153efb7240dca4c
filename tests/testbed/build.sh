#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager (Kubernetes 1.20.2) from
# Debian bookworm's `kubernetes` source package, so that tests can run against
# a real API server on machines that reach only Debian's archive.
#
# Idempotent and cached: when the binaries for this recipe exist, it returns at
# once. See README.md beside this file.
set -euo pipefail

# The upstream version inside Debian's orig tarball. Debian revisions of the
# package only add kubectl patches, which we do not apply, so the binaries
# depend on this and on RECIPE alone.
readonly KUBE_ORIG_VERSION="1.20.5+really1.20.2"
readonly KUBE_UPSTREAM_VERSION="1.20.2"
# Bump when the build steps below change, so that cached binaries are rebuilt.
readonly RECIPE=1
readonly STAMP_TEXT="kubernetes-orig=${KUBE_ORIG_VERSION} recipe=${RECIPE}"

readonly CACHE="${SWITCHBOARD_TESTBED_CACHE:-${HOME}/.cache/switchboard-testbed}"
readonly BIN="${CACHE}/bin"
readonly STAMP="${BIN}/.stamp"
readonly BINARIES=(kube-apiserver kube-controller-manager)
# Tools start.sh needs at run time, and the packages that provide them.
readonly RUNTIME_TOOLS=(etcd openssl curl)
readonly PACKAGES=(
  etcd-server
  golang-go
  golang-github-modern-go-reflect2-dev
  openssl
  curl
  make    # upstream's gen_openapi is a make target...
  rsync   # ...whose helper scripts copy binaries with rsync
  ca-certificates
)

log() { printf 'testbed build: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

binaries_ok() {
  local b
  [[ -f "${STAMP}" && "$(<"${STAMP}")" == "${STAMP_TEXT}" ]] || return 1
  for b in "${BINARIES[@]}"; do
    [[ -x "${BIN}/${b}" ]] || return 1
  done
}

runtime_tools_ok() {
  local t
  for t in "${RUNTIME_TOOLS[@]}"; do
    command -v "${t}" >/dev/null 2>&1 || return 1
  done
}

as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

ensure_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${db:Status-Status}' "${p}" 2>/dev/null || true)" != "installed" ]]; then
      missing+=("${p}")
    fi
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing Debian packages: ${missing[*]}"
  local aptlog="${CACHE}/apt-install.log"
  # A fresh machine has no package lists yet; an old list may name files the
  # mirror no longer has. Both are cured by one update.
  if ! { as_root apt-get update -q &&
    as_root env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"${aptlog}" 2>&1; then
    tail -n 30 "${aptlog}" >&2
    die "apt-get failed (log: ${aptlog})"
  fi
}

# Prints the URI of the machine's own Debian archive (the one carrying the
# release suite, not -security/-updates or third-party repositories), read from
# both the one-line (*.list) and the deb822 (*.sources) formats.
debian_mirror_uri() {
  local codename="" f uri
  if [[ -r /etc/os-release ]]; then
    # shellcheck disable=SC1091 # a system file, not part of this project
    codename="$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")"
  fi
  local -a oneline=() deb822=()
  [[ -f /etc/apt/sources.list ]] && oneline+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list; do [[ -f "${f}" ]] && oneline+=("${f}"); done
  for f in /etc/apt/sources.list.d/*.sources; do [[ -f "${f}" ]] && deb822+=("${f}"); done

  # Suites that only Debian's own archive carries; third-party repos use their
  # own suite names ("nodistro", "cloud-sdk-bookworm", ...).
  local suites="bookworm trixie forky sid bullseye stable testing unstable ${codename}"
  uri=""
  if ((${#deb822[@]} > 0)); then
    uri="$(awk -v suites="${suites}" '
      function flush(   i, n, s, u, t) {
        t = types; types = ""
        if (t ~ /(^| )deb( |$)/ && enabled !~ /^(no|false)$/) {
          n = split(suite, s, /[ \t]+/)
          split(uris, u, /[ \t]+/)
          for (i = 1; i <= n; i++) if (s[i] != "" && index(" " suites " ", " " s[i] " ")) { print u[1]; exit }
        }
        uris = ""; suite = ""; enabled = ""
      }
      FNR == 1 { flush() }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      { key = tolower($1); sub(/^[^:]*:[ \t]*/, ""); val = $0 }
      key == "types:" { types = val }
      key == "uris:" { uris = val }
      key == "suites:" { suite = val }
      key == "enabled:" { enabled = tolower(val) }
      END { flush() }
    ' "${deb822[@]}")"
  fi
  if [[ -z "${uri}" ]] && ((${#oneline[@]} > 0)); then
    uri="$(awk -v suites="${suites}" '
      /^[ \t]*(#|$)/ { next }
      $1 == "deb" || $1 == "deb-src" {
        i = 2
        if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
        if (index(" " suites " ", " " $(i + 1) " ")) { print $i; exit }
      }
    ' "${oneline[@]}")"
  fi
  printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

# Downloads the kubernetes source package through a private apt configuration,
# so that the machine's /etc/apt is left as it is.
fetch_source() {
  local srcdir="${CACHE}/src" orig
  orig="${srcdir}/kubernetes_${KUBE_ORIG_VERSION}.orig.tar.gz"
  [[ -s "${orig}" ]] && return 0

  local apt="${CACHE}/apt" mirror
  mirror="${SWITCHBOARD_DEBIAN_MIRROR:-$(debian_mirror_uri)}"
  mkdir -p "${apt}/sources.list.d" "${apt}/lists/partial" "${apt}/cache/archives/partial" "${srcdir}"
  # The one-line form: a deb822 stanza is not accepted in Dir::Etc::sourcelist.
  printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s bookworm main\n' \
    "${mirror}" >"${apt}/sources.list"
  # Sandbox user root: apt's _apt user cannot enter a cache under /root.
  cat >"${apt}/apt.conf" <<EOF
Dir::Etc::sourcelist "${apt}/sources.list";
Dir::Etc::sourceparts "${apt}/sources.list.d";
Dir::State::Lists "${apt}/lists";
Dir::Cache "${apt}/cache";
APT::Sandbox::User "root";
EOF
  log "fetching the kubernetes source package from ${mirror} (bookworm)"
  APT_CONFIG="${apt}/apt.conf" apt-get update -qq >&2
  (cd "${srcdir}" && APT_CONFIG="${apt}/apt.conf" apt-get source -qq --download-only kubernetes/bookworm >&2)
  [[ -s "${orig}" ]] || die "bookworm's kubernetes source no longer ships ${KUBE_ORIG_VERSION} (got: $(ls "${srcdir}")); update KUBE_ORIG_VERSION"
}

# Unpacks the upstream tree into a GOPATH and makes it buildable with the
# Debian toolchain. A marker records a completed preparation, so an interrupted
# one is redone from scratch.
prepare_tree() {
  local tree="$1" marker="$1/.switchboard-prepared"
  [[ -f "${marker}" && "$(<"${marker}")" == "${STAMP_TEXT}" ]] && return 0

  log "unpacking kubernetes ${KUBE_UPSTREAM_VERSION}"
  rm -rf "${tree}"
  mkdir -p "${tree}"
  tar -xzf "${CACHE}/src/kubernetes_${KUBE_ORIG_VERSION}.orig.tar.gz" -C "${tree}" --strip-components=1

  # Vendored reflect2 1.0.1 crashes on map encoding under Go >= 1.18.
  local reflect2=/usr/share/gocode/src/github.com/modern-go/reflect2
  [[ -d "${reflect2}" ]] || die "missing ${reflect2} (golang-github-modern-go-reflect2-dev)"
  rm -rf "${tree}/vendor/github.com/modern-go/reflect2"
  cp -r "${reflect2}" "${tree}/vendor/github.com/modern-go/reflect2"
  # Debian's copy may carry its own go.mod/tests; vendor/ wants sources only.
  find "${tree}/vendor/github.com/modern-go/reflect2" -name '*_test.go' -delete

  # The tarball lacks the generated OpenAPI definitions that kube-apiserver
  # imports; upstream's make target generates them offline.
  log "generating OpenAPI definitions (make gen_openapi)"
  (cd "${tree}" && make gen_openapi >"${CACHE}/gen_openapi.log" 2>&1) ||
    { tail -n 40 "${CACHE}/gen_openapi.log" >&2; die "make gen_openapi failed (log: ${CACHE}/gen_openapi.log)"; }
  [[ -s "${tree}/pkg/generated/openapi/zz_generated.openapi.go" ]] || die "gen_openapi produced no output"
  # Upstream's scratch GOPATH and its Go cache are not needed once generated.
  rm -rf "${tree}/_output" "${tree}/.make"

  printf '%s\n' "${STAMP_TEXT}" >"${marker}"
}

build_binaries() {
  local gopath="${CACHE}/gopath" tree out pkg
  tree="${gopath}/src/k8s.io/kubernetes"
  # Build next to the final place and move in at the end, so that an
  # interrupted build never leaves a half-written binary behind.
  out="${CACHE}/bin.tmp"

  export GOPATH="${gopath}" GOCACHE="${CACHE}/gocache" GO111MODULE=off GOPROXY=off GOFLAGS="" \
    CGO_ENABLED=0 GOENV=off
  prepare_tree "${tree}"

  local vpkg="k8s.io/kubernetes/vendor/k8s.io"
  local ldflags="-s -w"
  for pkg in "${vpkg}/component-base/version" "${vpkg}/client-go/pkg/version"; do
    ldflags+=" -X ${pkg}.gitVersion=v${KUBE_UPSTREAM_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=20"
    ldflags+=" -X ${pkg}.gitTreeState=archive"
  done

  log "compiling ${BINARIES[*]} (about 5 min with a cold Go cache)"
  rm -rf "${out}"
  mkdir -p "${out}"
  local -a pkgs=()
  for pkg in "${BINARIES[@]}"; do pkgs+=("./cmd/${pkg}"); done
  (cd "${tree}" && go build -o "${out}/" -ldflags "${ldflags}" "${pkgs[@]}") >&2

  mkdir -p "${BIN}"
  rm -f "${STAMP}"
  for pkg in "${BINARIES[@]}"; do mv -f "${out}/${pkg}" "${BIN}/${pkg}"; done
  rmdir "${out}"
  printf '%s\n' "${STAMP_TEXT}" >"${STAMP}"
}

main() {
  if binaries_ok && runtime_tools_ok; then
    return 0
  fi

  mkdir -p "${CACHE}"
  # Two test runs may start at once on a cold cache; only one should build.
  exec 9>"${CACHE}/build.lock"
  if ! flock -n 9; then
    log "waiting for another build to finish"
    flock 9
  fi

  ensure_packages
  if binaries_ok; then
    return 0
  fi

  local start=${SECONDS}
  fetch_source
  build_binaries
  log "done in $((SECONDS - start)) s: ${BIN}"
}

main "$@"
