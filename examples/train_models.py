"""Train the example models: fixed seeds, a few seconds, idempotent.

Writes into --out (default examples/models):
  model.txt / model.onnx                the v1 LightGBM booster and its ONNX conversion
  model-v2.txt / model-v2.onnx          a good retrain: same data-generating process, another seed
  model-permuted.txt / .onnx            a "silent bug": v1's data with its feature columns permuted,
                                        so it loads and serves fine but predicts nonsense
  request.json                          one-row Open Inference Protocol v2 request
  request-batch.json                    256-row OIP v2 request (also the replay reference rows)
  request-v1.json                       KServe v1 request with `instances` keyed by feature name
  models.json                           sha256 of every model file and the arguments used

Run again with the same arguments and it does nothing (models.json records them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def make_data(rows: int, features: int, classes: int, seed: int) -> tuple[Any, Any]:
    """A learnable problem: the class depends on a few features, non-linearly."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    score = 1.5 * x[:, 0] - x[:, 1] + 0.8 * x[:, 2] * x[:, 3] + 0.3 * rng.normal(size=rows)
    if classes <= 2:
        y = (score > 0).astype(int)
    else:
        edges = np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])
        y = np.digitize(score, edges)
    return x, y


def train(x: Any, y: Any, classes: int, iterations: int, seed: int, names: list[str]) -> Any:
    import lightgbm

    params: dict[str, Any] = {
        "objective": "multiclass" if classes > 2 else "binary",
        "num_leaves": 15,
        "learning_rate": 0.1,
        "min_data_in_leaf": 10,
        "num_threads": 1,
        "deterministic": True,
        "force_row_wise": True,
        "seed": seed,
        "verbose": -1,
    }
    if classes > 2:
        params["num_class"] = classes
    dataset = lightgbm.Dataset(x, y, feature_name=names, free_raw_data=False)
    return lightgbm.train(params, dataset, num_boost_round=iterations)


def to_onnx(booster: Any, features: int) -> bytes:
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[("input", FloatTensorType([None, features]))],
        zipmap=False,
        target_opset=15,
    )
    data: bytes = model.SerializeToString()
    return data


def oip_request(rows: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP64",
                "shape": list(rows.shape),
                "data": [round(float(v), 6) for v in rows.ravel()],
            }
        ]
    }


def write_models(out: Path, args: argparse.Namespace) -> dict[str, str]:
    names = [f"f{i}" for i in range(args.features)]
    x, y = make_data(args.rows, args.features, args.classes, args.seed)
    x2, y2 = make_data(args.rows, args.features, args.classes, args.seed + 1)
    permutation = np.random.default_rng(args.seed + 2).permutation(args.features)
    boosters = {"model": train(x, y, args.classes, args.iterations, args.seed, names)}
    if not args.only_v1:
        boosters["model-v2"] = train(x2, y2, args.classes, args.iterations, args.seed + 1, names)
        boosters["model-permuted"] = train(
            x[:, permutation], y, args.classes, args.iterations, args.seed, names
        )
    digests: dict[str, str] = {}
    for stem, booster in boosters.items():
        text_path, onnx_path = out / f"{stem}.txt", out / f"{stem}.onnx"
        booster.save_model(str(text_path))
        onnx_path.write_bytes(to_onnx(booster, args.features))
        for path in (text_path, onnx_path):
            digests[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    probe = np.random.default_rng(args.seed + 3).normal(size=(256, args.features))
    (out / "request.json").write_text(json.dumps(oip_request(probe[:1])))
    (out / "request-batch.json").write_text(json.dumps(oip_request(probe)))
    instances = [dict(zip(names, map(float, row), strict=True)) for row in probe[:4]]
    (out / "request-v1.json").write_text(json.dumps({"instances": instances}))
    return digests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/models"))
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=50, help="boosting rounds")
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only-v1", action="store_true", help="skip the v2 and permuted variants")
    parser.add_argument("--force", action="store_true", help="retrain even when up to date")
    args = parser.parse_args(argv)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "force")}
    manifest_path = args.out / "models.json"
    if not args.force and manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("arguments") == settings and all(
            (args.out / name).is_file() for name in manifest.get("sha256", {})
        ):
            print(f"{args.out}: up to date")
            return 0
    args.out.mkdir(parents=True, exist_ok=True)
    digests = write_models(args.out, args)
    manifest_path.write_text(json.dumps({"arguments": settings, "sha256": digests}, indent=2))
    print(f"{args.out}: wrote {', '.join(sorted(digests))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
