"""Small real models, trained once per session: LightGBM (binary, multiclass, regression,
categorical) and scikit-learn converted to ONNX; plus helpers to build a served app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest

FEATURES = 6


def _train(objective: str, y: Any, x: Any, **params: Any) -> lightgbm.Booster:
    names = [f"f{i}" for i in range(x.shape[1])]
    base = {
        "objective": objective,
        "num_leaves": 7,
        "min_data_in_leaf": 5,
        "num_threads": 1,
        "deterministic": True,
        "verbose": -1,
        "seed": 3,
    }
    dataset = lightgbm.Dataset(x, y, feature_name=names, **params.pop("dataset", {}))
    return lightgbm.train({**base, **params}, dataset, num_boost_round=15)


@pytest.fixture(scope="session")
def training_data() -> tuple[Any, Any]:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(600, FEATURES))
    score = x[:, 0] - 0.7 * x[:, 1] + 0.5 * x[:, 2] * x[:, 3]
    return x, score


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, training_data: tuple[Any, Any]) -> Path:
    """binary.txt, multiclass.txt, regression.txt, categorical.txt, logistic.onnx, mlp.onnx."""
    out = tmp_path_factory.mktemp("models")
    x, score = training_data
    _train("binary", (score > 0).astype(int), x).save_model(str(out / "binary.txt"))
    classes = np.digitize(score, np.quantile(score, [0.33, 0.66]))
    _train("multiclass", classes, x, num_class=3).save_model(str(out / "multiclass.txt"))
    _train("regression", score, x).save_model(str(out / "regression.txt"))
    categorical = x.copy()
    categorical[:, 5] = np.random.default_rng(1).integers(0, 4, size=len(x))
    cat_score = score + (categorical[:, 5] == 2) * 2.0
    _train(
        "binary",
        (cat_score > 0.5).astype(int),
        categorical,
        dataset={"categorical_feature": [5]},
    ).save_model(str(out / "categorical.txt"))
    _sklearn_onnx(x, (score > 0).astype(int), out)
    return out


def _sklearn_onnx(x: Any, y: Any, out: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeRegressor

    logistic = LogisticRegression(max_iter=200).fit(x, y)
    onnx = to_onnx(logistic, x[:1].astype(np.float32), options={"zipmap": False})
    (out / "logistic.onnx").write_bytes(onnx.SerializeToString())
    tree = DecisionTreeRegressor(max_depth=4, random_state=0).fit(x, x[:, 0])
    onnx = to_onnx(tree, x[:1].astype(np.float32))
    (out / "tree.onnx").write_bytes(onnx.SerializeToString())
    zipmapped = to_onnx(logistic, x[:1].astype(np.float32))
    (out / "zipmap.onnx").write_bytes(zipmapped.SerializeToString())


@pytest.fixture
def make_settings(model_dir: Path, tmp_path: Path) -> Callable[..., Any]:
    """ServerSettings for one of the session's models, overrides as keyword arguments."""
    from modelfleet.server.settings import ServerSettings

    def make(model: str = "multiclass.txt", **overrides: Any) -> ServerSettings:
        values: dict[str, Any] = {
            "model_uri": str(model_dir / model),
            "cache_dir": tmp_path / "cache",
            "lightgbm_backend": "native",
            "max_batch_size": 16,
        }
        values.update(overrides)
        return ServerSettings(**values)

    return make


@pytest.fixture
def serve(make_settings: Callable[..., Any]) -> Any:
    """serve(model=..., slow_s=..., keys=..., jwt=..., **settings) -> (asgi app, data plane)."""
    import dataclasses

    from server_helpers import SlowRuntime

    from modelfleet.server.app import create_app
    from modelfleet.server.auth import ApiKeys, Authenticator
    from modelfleet.server.dataplane import DataPlane
    from modelfleet.server.metrics import ServerMetrics
    from modelfleet.server.model import load_model

    planes: list[DataPlane] = []

    def make(model: str = "multiclass.txt", slow_s: float = 0.0, keys: Path | None = None,
             jwt: Any = None, **overrides: Any) -> tuple[Any, DataPlane]:  # fmt: skip
        settings = make_settings(model, **overrides)
        loaded = load_model(settings)
        if slow_s:
            loaded = dataclasses.replace(loaded, runtime=SlowRuntime(loaded.runtime, slow_s))
        metrics = ServerMetrics("fraud", "green", "abc123", loaded.name)
        plane = DataPlane(loaded, settings, metrics)
        planes.append(plane)
        api_keys = ApiKeys(keys) if keys else None
        auth = Authenticator(api_keys, jwt) if api_keys or jwt else None
        return create_app(plane, auth), plane

    yield make
    for plane in planes:
        plane.close()


@pytest.fixture
def connect() -> Any:
    """connect(app) -> SyncClient, closed after the test."""
    from server_helpers import SyncClient

    clients: list[SyncClient] = []

    def make(app: Any) -> SyncClient:
        clients.append(SyncClient(app))
        return clients[-1]

    yield make
    for client in clients:
        client.close()
