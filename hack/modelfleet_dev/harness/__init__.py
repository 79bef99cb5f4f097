"""The e2e harness (`modelfleet_dev.harness`): a traffic driver that honours the live router
weights, the operator as a process, ModelDeployment manifests with short steps, status recording.

Used by tests/e2e, bench/rollout and the demo (hack/modelfleet_dev/demo).
"""
