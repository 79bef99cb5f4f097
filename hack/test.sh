#!/usr/bin/env bash
# `make test`: every tier, with the real tier's set-up built while the other tiers run.
#
# On a fresh machine the real tier's set-up (Debian packages, kubelet and kube-proxy, Traefik,
# Prometheus and prometheus-operator built from their Go modules, the images) takes half an hour
# of compiling; the unit, integration and e2e tiers spend most of theirs waiting on clocks
# (analysis intervals, Prometheus scrapes). So the set-up runs beside them at the lowest CPU and
# I/O priority, and the real tier starts once it is done. On a machine where everything is cached
# the set-up is a few seconds of checks and nothing changes.
#
# Lint runs first (a failure stops everything); then both pytest runs always happen (a failure in
# the first tiers does not hide the real tier's result) and the exit status is the first failure's.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"

say() { echo "[test] $*" >&2; }

bash hack/setup.sh || exit 1
make --no-print-directory lint || exit 1

log="$(mktemp -t modelfleet-setup-real.XXXXXX.log)"
setsid nice -n 19 ionice -c 3 bash hack/setup-real.sh >"$log" 2>&1 &
setup_real=$!
# Interrupted or not, never leave the set-up (its Go builds) running behind us.
trap 'kill -- -"$setup_real" 2>/dev/null' EXIT
say "real tier set-up running beside the first tiers (pid $setup_real, log $log)"

status=0
"$PY" -m pytest tests/unit tests/integration tests/e2e || status=$?

started=$(date +%s)
wait "$setup_real"
setup_status=$?
cat "$log" >&2
rm -f "$log"
say "real tier set-up finished (exit $setup_status), waited $(($(date +%s) - started)) s for it"
if [ "$setup_status" != 0 ]; then
  say "FAILED: hack/setup-real.sh (exit $setup_status): the real tier cannot run"
  exit "$setup_status"
fi

real_status=0
"$PY" -m pytest tests/real || real_status=$?
if [ "$status" = 0 ]; then status=$real_status; fi
exit "$status"
