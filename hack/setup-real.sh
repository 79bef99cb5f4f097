#!/usr/bin/env bash
# What the real-node tier needs on top of hack/setup.sh; idempotent (installs only what is missing).
#  1. Debian packages: containerd, runc, the CNI plugins, iptables, conntrack, iproute2 (the node),
#     buildah and debootstrap (the images).
#  2. kubelet and kube-proxy, built from the control plane's Kubernetes modules into the cache.
#  3. The images (hack/modelfleet_dev/realnode/images.py), so that `up` and the tests only import them; among
#     them Prometheus, prometheus-operator and its config reloader, each built from its Go module
#     (Prometheus: about 5 minutes cold on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"

say() { echo "[setup-real] $*" >&2; }

PACKAGES=(containerd runc containernetworking-plugins iptables conntrack iproute2 buildah debootstrap)
missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ "${#missing[@]}" = 0 ]; then
  say "packages: all installed (${PACKAGES[*]})"
else
  say "installing ${missing[*]} (Debian packages) …"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq -o DPkg::Lock::Timeout=600
  # policy-rc.d keeps the packages' own services (containerd) from starting: the harness starts
  # its own containerd per node, with its own root and socket.
  POLICY=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    POLICY=/usr/sbin/policy-rc.d
    echo 'exit 101' | $SUDO tee "$POLICY" >/dev/null && $SUDO chmod +x "$POLICY"
  fi
  status=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "${missing[@]}" || status=$?
  if [ -n "$POLICY" ]; then $SUDO rm -f "$POLICY"; fi
  if [ "$status" != 0 ]; then say "FAILED: apt-get install ${missing[*]} (exit $status)"; exit 1; fi
  say "installed ${missing[*]}"
fi

if ! command -v go >/dev/null; then
  say "FAILED: the Go toolchain (go) is needed to build kubelet and kube-proxy"
  exit 1
fi
say "node: building (or reusing) kubelet and kube-proxy"
PYTHONPATH=hack "$PY" -m modelfleet_dev.realnode build >/dev/null
say "images: building (or reusing) the sandbox, server, operator, gateway and Prometheus images"
PYTHONPATH=hack "$PY" -m modelfleet_dev.realnode.images >/dev/null
say "done"
