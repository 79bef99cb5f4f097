#!/usr/bin/env bash
# Installs what the test tiers and the demo need on a fresh machine; idempotent and cached.
#  1. Prometheus (and promtool) and redis-server from Debian's packages, if missing (their services
#     are not used: the tests start their own; Redis backs the shared rate limits and cache).
#  2. The local control plane's binaries, built from Go modules into a cache outside the repo.
#  3. helm, built from its Go module into the same cache (charts/modelfleet's tests).
#  4. The example models.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"

say() { echo "[setup] $*" >&2; }

missing=()
command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ "${#missing[@]}" != 0 ]; then
  say "installing ${missing[*]} (Debian packages) …"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  # policy-rc.d keeps the packages' own services from starting: the tests start their own.
  POLICY=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    POLICY=/usr/sbin/policy-rc.d
    echo 'exit 101' | $SUDO tee "$POLICY" >/dev/null && $SUDO chmod +x "$POLICY"
  fi
  status=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || status=$?
  if [ -n "$POLICY" ]; then $SUDO rm -f "$POLICY"; fi
  if [ "$status" != 0 ]; then say "FAILED: apt-get install ${missing[*]} (exit $status)"; exit 1; fi
fi
say "prometheus: $(prometheus --version 2>&1 | head -1)"
say "redis: $(redis-server --version)"

if ! command -v go >/dev/null; then
  say "FAILED: the Go toolchain (go) is needed to build the local control plane"
  exit 1
fi
say "control plane: building (or reusing) etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok"
PYTHONPATH=hack "$PY" -m modelfleet_dev.localcluster build >/dev/null

say "helm: building (or reusing) helm from helm.sh/helm/v4 (the chart's tests render and install with it)"
PYTHONPATH=hack "$PY" -m modelfleet_dev.localcluster.helm >/dev/null

.venv/bin/python examples/train_models.py --out examples/models  # example models (idempotent; model server issue)
say "done"
