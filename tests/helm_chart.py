"""What the Helm tests share: the helm binary (built into the cache like the control plane's
binaries), rendering the chart, the labels only Helm adds, and the real tier's values.

Used by tests/integration/test_helm_chart.py, tests/integration/test_helm_install.py and
tests/real/test_helm_install.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelfleet_dev.localcluster.build import BuildError
from modelfleet_dev.localcluster.helm import build_helm
from modelfleet_dev.realnode.config import REAL_NODE_SELECTOR, REAL_TOLERATION
from modelfleet_dev.realnode.images import OPERATOR_REF, SERVER_REF

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "modelfleet"
# the labels the chart adds beyond the kustomize install's (see charts/modelfleet/README.md)
HELM_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
)


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary; a build that fails fails the test, never skips it."""
    try:
        return build_helm().binary
    except BuildError as error:
        pytest.fail(f"helm did not build: {error}", pytrace=False)


def run_helm(helm: Path, *args: str, kubeconfig: Path | None = None) -> str:
    config = [f"--kubeconfig={kubeconfig}"] if kubeconfig else []
    done = subprocess.run(
        [str(helm), *config, *args], capture_output=True, text=True, check=False, timeout=300
    )
    assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def set_args(values: dict[str, Any]) -> list[str]:
    """`--set-json key=<json>` for each top-level value: no escaping rules of --set to get wrong."""
    return [
        arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")
    ]


def template(
    helm: Path,
    values: dict[str, Any],
    release: str = "modelfleet",
    namespace: str = "modelfleet-system",
) -> str:
    """`helm template` of the chart with its CRDs."""
    return run_helm(
        helm, "template", release, str(CHART), "-n", namespace, "--include-crds", *set_args(values)
    )


def without_helm_labels(document: dict[str, Any], also: tuple[str, ...] = ()) -> dict[str, Any]:
    """A copy without the labels Helm adds (and `also`), on the object and its pod template
    (an emptied map dropped)."""
    copied: dict[str, Any] = json.loads(json.dumps(document))
    holders = [copied.get("metadata", {})]
    holders.append(copied.get("spec", {}).get("template", {}).get("metadata", {}))
    for holder in holders:
        labels = holder.get("labels", {})
        for key in (*HELM_LABELS, *also):
            labels.pop(key, None)
        if "labels" in holder and not labels:
            del holder["labels"]
    return copied


def objects(text: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Rendered YAML keyed by (kind, name)."""
    documents = [d for d in yaml.safe_load_all(text) if d]
    keyed = {(d["kind"], d["metadata"]["name"]): d for d in documents}
    assert len(keyed) == len(documents), "two objects with one kind and name"
    return keyed


def real_tier_values(prometheus_url: str) -> dict[str, Any]:
    """The chart's values for what hack/modelfleet_dev/realnode/overlay changes: local images, the tier's
    Prometheus, the operator Pod on a real node."""
    repository, _, tag = OPERATOR_REF.rpartition(":")
    return {
        "image": {"repository": repository, "tag": tag},
        "serverImage": SERVER_REF,
        "prometheusUrl": prometheus_url,
        "nodeSelector": REAL_NODE_SELECTOR,
        "tolerations": [REAL_TOLERATION],
    }
