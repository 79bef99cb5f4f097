"""The modelfleet operator: ModelDeployment API types, builders, rollout and analysis.

Importing this package must stay cheap: nothing here imports kopf or the Kubernetes
client at module level, so the CLI can load it in the server image too.
"""
