"""The real tier of the local cluster (`modelfleet_dev.realnode`): real nodes beside kwok's.

kubelet and kube-proxy built from the control plane's Kubernetes modules, Debian's containerd,
runc and CNI plugins, all inside a network namespace the harness creates; the control plane
stays on host loopback. `python -m modelfleet_dev.realnode build|up|down|env|serve` is the command line;
docs/local-cluster.md ("Real nodes") describes what runs where.
"""
