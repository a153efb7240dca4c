#!/usr/bin/env bash
# Runs every test. The end-to-end suite needs a real API server: with
# SWITCHBOARD_TEST_KUBECONFIG set it uses that cluster, otherwise it starts a
# throwaway one from tests/testbed/ (built once, then cached) and stops it at
# the end. Extra arguments go to `cargo test`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z "${SWITCHBOARD_TEST_KUBECONFIG:-}" ]]; then
  state="$(mktemp -d -t switchboard-testbed.XXXXXX)"
  # shellcheck disable=SC2317 # invoked by the trap
  cleanup() {
    tests/testbed/stop.sh "${state}" || true
    rm -rf "${state}"
  }
  trap cleanup EXIT
  SWITCHBOARD_TEST_KUBECONFIG="$(tests/testbed/start.sh "${state}")"
  export SWITCHBOARD_TEST_KUBECONFIG
fi

# The contract tests validate every provider call against the providers' own
# OpenAPI documents through Prism; Prism and Twilio's documents come from npm
# (once, then cached), LINE's is the extract committed in tests/contract/extracts/.
tests/contract/prism.sh install >/dev/null

cargo test --locked "$@"
