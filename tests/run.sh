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

# The store tests run on a real PostgreSQL: SWITCHBOARD_TEST_POSTGRES_URL names
# an existing server (a superuser's connection string), otherwise a throwaway
# one from Debian's `postgresql` package is started in a temporary folder and
# stopped at the end. The TLS tests (tests/store_postgres_tls.rs) start a server
# of their own from the same package (tests/postgres/start.sh --tls).
if [[ -z "${SWITCHBOARD_TEST_POSTGRES_URL:-}" ]]; then
  pg_state="$(mktemp -d -t switchboard-postgres.XXXXXX)"
  # shellcheck disable=SC2317 # invoked by the trap
  stop_postgres() {
    tests/postgres/stop.sh "${pg_state}" || true
    rm -rf "${pg_state}"
  }
  if [[ -n "${state:-}" ]]; then
    trap 'stop_postgres; cleanup' EXIT
  else
    trap stop_postgres EXIT
  fi
  SWITCHBOARD_TEST_POSTGRES_URL="$(tests/postgres/start.sh "${pg_state}")"
  export SWITCHBOARD_TEST_POSTGRES_URL
fi

# The contract tests validate every provider call against the providers' own
# OpenAPI documents through Prism; Prism and Twilio's documents come from npm
# (once, then cached), LINE's is the extract committed in tests/contract/extracts/.
tests/contract/prism.sh install >/dev/null

cargo test --locked "$@"
# The gateway suite once more, with every gateway on PostgreSQL instead of SQLite.
SWITCHBOARD_TEST_STORE=postgres cargo test --locked --test gateway "$@"
