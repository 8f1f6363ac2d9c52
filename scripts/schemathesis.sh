#!/usr/bin/env bash
# schemathesis against a real 3-node cluster (a step of scripts/test-all): the cluster's
# own OpenAPI description (GET /v1/openapi.json) drives a short, bounded, seeded run with
# the admin token: examples, coverage (valid and invalid values of every parameter and
# field, requests without the token), fuzzing, and stateful sequences along the
# description's links (PUT a resource, acquire on it, release and renew the lease). It
# fails on any 5xx and on any answer that does not conform to the description (status,
# content type, headers, body schema).
#
#   scripts/schemathesis.sh [BIN]      BIN: the ratequeue binary (default target/debug/ratequeue)
#
# Environment: SCHEMATHESIS_VENV (default target/schemathesis-venv; created and filled
# from PyPI when missing or not working), SCHEMATHESIS_SEED (default 15), SCHEMATHESIS_MAX_EXAMPLES
# (per operation, default 25), SCHEMATHESIS_REPORT (a directory for the JUnit report and
# node logs, default target/schemathesis).
#
# Left out of the run: the membership routes (random member ids would dismantle the
# cluster under test, and a made-up peer address is retried for 10 s per call; both are
# covered by the integration tests: node/server/tests/it/security.rs, replication.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-target/debug/ratequeue}
venv=${SCHEMATHESIS_VENV:-target/schemathesis-venv}
seed=${SCHEMATHESIS_SEED:-15}
examples=${SCHEMATHESIS_MAX_EXAMPLES:-25}
report=${SCHEMATHESIS_REPORT:-target/schemathesis}
version=4.32.5

# A venv counts as installed only if it works: its interpreter runs, schemathesis is
# the pinned version, its run's modules import, and pip finds every requirement of every
# installed package met. Anything else (an interrupted install, a venv made by another
# Python, a package removed by hand) is emptied and installed afresh.
venv_works() {
  "$venv/bin/python" -c 'import schemathesis.cli, hypothesis, requests, yaml' >/dev/null 2>&1 \
    && "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "version $version\$" \
    && "$venv/bin/python" -m pip check --disable-pip-version-check >/dev/null 2>&1
}
if ! venv_works; then
  if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ]; then
    echo "$venv exists but is not a venv: remove it, or set SCHEMATHESIS_VENV" >&2
    exit 1
  fi
  echo "installing schemathesis $version into $venv"
  python3 -m venv --clear "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$version"
  if ! venv_works; then
    echo "schemathesis $version does not work in $venv after installing it" >&2
    exit 1
  fi
fi

# shellcheck source=scripts/dev-cluster.sh
. scripts/dev-cluster.sh
trap 'dev_cluster_stop "$report"' EXIT
mkdir -p "$report"
dev_cluster_start "$bin" 3
echo "schemathesis $version against $DEV_LEADER_URL (seed $seed, at most $examples examples per operation)"

# The run is bounded by --max-examples per operation and --max-time; `timeout` is the
# last resort against a hang.
status=0
# The hooks keep each acquire's wait short (scripts/schemathesis_hooks.py).
SCHEMATHESIS_HOOKS=scripts/schemathesis_hooks.py timeout 300 "$venv/bin/schemathesis" run "$DEV_LEADER_URL/v1/openapi.json" \
  --url "$DEV_LEADER_URL" \
  --header "Authorization: Bearer $DEV_TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --exclude-path-regex '^/v1/cluster/members' \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$examples" \
  --max-time 150 \
  --seed "$seed" \
  --workers 1 \
  --request-timeout 40 \
  --max-redirects 0 \
  --no-color \
  --report junit,ndjson --report-junit-path "$report/junit.xml" --report-ndjson-path "$report/events.ndjson" \
  || status=$?
if [ "$status" -ne 0 ]; then
  echo "schemathesis failed (exit $status); node logs in $report" >&2
fi
exit "$status"
