"""The e2e harness (importable with PYTHONPATH=hack): a traffic driver that honours the live router
weights, the operator as a process, ModelDeployment manifests with short steps, status recording.

Used by tests/e2e, bench/rollout and the demo (hack/demo).
"""
