"""modelfleet's development side: everything the tests, the demo and the benchmarks stand on.

- `localcluster`: the local control plane (etcd, kube-apiserver, controller-manager, scheduler,
  kwok's fake nodes, Prometheus, a runner that backs pods with local processes).
- `realnode`: the real tier beside it (kubelet and containerd nodes in network namespaces, our
  images, Traefik, prometheus-operator's Prometheus).
- `harness`: what the e2e tests and benchmarks drive a rollout with (traffic, the operator as a
  process, manifests, status records).
- `demo`: `make demo`'s story.

Import it with `hack/` on the path (`PYTHONPATH=hack`), never the repository's root: the root's
`operator/` folder (the package's `modelfleet.operator`) would shadow the standard library's
`operator` module.
"""

from pathlib import Path

HACK_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = HACK_DIR.parent
