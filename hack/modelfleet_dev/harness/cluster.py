"""What the harness needs of a cluster: kubectl and an API client.

A `localcluster.LocalCluster` has both, and so do the demo's kwok and real tiers
(`demo.cluster.DemoCluster`, `demo.real.RealDemoCluster`), which drive the same helpers.
"""

from __future__ import annotations

import subprocess
from typing import Any, Protocol


class Cluster(Protocol):
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl ARGS` against this cluster; raises on a non-zero exit when `check`."""
        ...

    def api_client(self) -> Any:
        """A fresh `kubernetes.client.ApiClient` for this cluster."""
        ...
