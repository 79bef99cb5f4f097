"""Train the example models: fixed seeds, a few seconds, idempotent.

Writes into --out (default examples/models):
  model.txt / model.onnx                the v1 LightGBM booster and its ONNX conversion
  model-v2.txt / model-v2.onnx          a good retrain: same data-generating process, another seed
  model-permuted.txt / .onnx            a "silent bug": v1's data with its feature columns permuted,
                                        so it loads and serves fine but predicts nonsense (i.i.d.
                                        features: its output distribution looks like v1's)
  model-relabelled.txt / .onnx          trained on a relabelled target (class edges at the 0.6 and
                                        0.9 quantiles of the score instead of tertiles): its class
                                        shares and probabilities move clearly
  reference.csv                         512 rows, comma-separated floats, no header: the reference
                                        set of the rollout's paired gate (replay.referenceUri)
  request.json                          one-row Open Inference Protocol v2 request
  request-batch.json                    256-row OIP v2 request
  request-v1.json                       KServe v1 request with `instances` keyed by feature name
  models.json                           sha256 of every file, the arguments used, and how each
                                        variant compares with v1 on reference.csv (agreement,
                                        PSI of the probability histograms)

Run again with the same arguments and it does nothing (models.json records them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# Bumped when the files written change: an older models.json is then out of date.
FORMAT = 2
REFERENCE_ROWS = 512
# PSI like the operator's drift gate: per output on the server's probability edges, Laplace
# smoothing of 0.5 per bucket, the largest over outputs.
PSI_SMOOTHING = 0.5
PSI_LARGE_ROWS = 20_000
NOISE_CANARY_ROWS = (500, 3200)
NOISE_DRAWS = 200


def class_quantiles(classes: int, relabelled: bool = False) -> Any:
    """Where the score is cut into classes: equal shares, or (relabelled) shares skewed
    towards class 0 (3 classes: the 0.6 and 0.9 quantiles; 2 classes: 0.8)."""
    if not relabelled:
        return np.linspace(0, 1, classes + 1)[1:-1]
    if classes <= 2:
        return np.array([0.8])
    return 0.6 + 0.3 * np.arange(classes - 1) / (classes - 2)


def make_data(
    rows: int, features: int, classes: int, seed: int, relabelled: bool = False
) -> tuple[Any, Any]:
    """A learnable problem: the class depends on a few features, partly through steps that
    trees find exactly, so that two honest trainings agree on most rows."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    steps = 0.8 * np.sign(x[:, 2]) * (x[:, 3] > 0)
    score = 1.5 * x[:, 0] - x[:, 1] + steps + 0.1 * rng.normal(size=rows)
    edges = np.quantile(score, class_quantiles(max(classes, 2), relabelled))
    return x, np.digitize(score, edges)


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


def train_all(args: argparse.Namespace) -> dict[str, Any]:
    """v1 and, unless --only-v1, its three variants, by file stem."""
    names = [f"f{i}" for i in range(args.features)]
    shape = (args.rows, args.features, args.classes)
    x, y = make_data(*shape, args.seed)
    boosters = {"model": train(x, y, args.classes, args.iterations, args.seed, names)}
    if not args.only_v1:
        x2, y2 = make_data(*shape, args.seed + 1)
        boosters["model-v2"] = train(x2, y2, args.classes, args.iterations, args.seed + 1, names)
        permutation = np.random.default_rng(args.seed + 2).permutation(args.features)
        boosters["model-permuted"] = train(
            x[:, permutation], y, args.classes, args.iterations, args.seed, names
        )
        _, relabelled = make_data(*shape, args.seed, relabelled=True)
        boosters["model-relabelled"] = train(
            x, relabelled, args.classes, args.iterations, args.seed, names
        )
    return boosters


def psi(expected: Any, actual: Any) -> float:
    """The largest PSI over the probability outputs (binary: the positive class only), on
    the server's histogram edges: what the operator's drift gate computes."""
    from modelfleet.server.predictions import PROBABILITY_EDGES

    edges = np.asarray(PROBABILITY_EDGES)
    first = 1 if expected.shape[1] == 2 else 0
    worst = 0.0
    for column in range(first, expected.shape[1]):
        shares = []
        for scores in (expected, actual):
            index = np.searchsorted(edges, scores[:, column], side="left")
            counts = np.bincount(index, minlength=len(edges) + 1) + PSI_SMOOTHING
            shares.append(counts / counts.sum())
        worst = max(worst, float(np.sum((shares[1] - shares[0]) * np.log(shares[1] / shares[0]))))
    return worst


def probabilities(booster: Any, rows: Any) -> Any:
    scores = booster.predict(rows)
    return np.column_stack((1 - scores, scores)) if scores.ndim == 1 else scores


def psi_noise(scores: Any, seed: int) -> dict[str, dict[str, float]]:
    """PSI between two disjoint random samples of v1's own answers (a canary of n rows, a
    stable slot of 4n): what the drift gate measures when nothing changed, by canary size."""
    rng = np.random.default_rng(seed)
    noise = {}
    for rows in NOISE_CANARY_ROWS:
        draws = []
        for _ in range(NOISE_DRAWS):
            order = rng.permutation(scores.shape[0])
            draws.append(psi(scores[order[4 * rows : 5 * rows]], scores[order[: 4 * rows]]))
        p95, p99 = np.percentile(draws, [95, 99])
        noise[str(rows)] = {"p95": round(float(p95), 4), "p99": round(float(p99), 4)}
    return noise


def compare(boosters: dict[str, Any], reference: Any, args: argparse.Namespace) -> dict[str, Any]:
    """How each variant answers next to v1 on reference.csv: share of equal predicted
    classes, score deltas and PSI; PSI on many fresh rows too (the populations' difference
    without sampling noise); and PSI's noise floor (v1 against itself)."""
    fresh = np.random.default_rng(args.seed + 5).normal(size=(PSI_LARGE_ROWS, args.features))
    stable = probabilities(boosters["model"], reference)
    stable_large = probabilities(boosters["model"], fresh)
    result: dict[str, Any] = {"psi_noise_v1_vs_v1": psi_noise(stable_large, args.seed + 6)}
    for stem, booster in boosters.items():
        if stem == "model":
            continue
        canary = probabilities(booster, reference)
        delta = np.abs(canary - stable)
        result[stem] = {
            "agreement": round(float(np.mean(canary.argmax(1) == stable.argmax(1))), 4),
            "score_delta_mean": round(float(delta.max(axis=1).mean()), 4),
            "score_delta_max": round(float(delta.max()), 4),
            "psi": round(psi(stable, canary), 4),
            f"psi_{PSI_LARGE_ROWS}_rows": round(
                psi(stable_large, probabilities(booster, fresh)), 4
            ),
        }
    return result


def write_models(out: Path, args: argparse.Namespace) -> tuple[dict[str, str], dict[str, Any]]:
    names = [f"f{i}" for i in range(args.features)]
    boosters = train_all(args)
    digests: dict[str, str] = {}
    for stem, booster in boosters.items():
        text_path, onnx_path = out / f"{stem}.txt", out / f"{stem}.onnx"
        booster.save_model(str(text_path))
        onnx_path.write_bytes(to_onnx(booster, args.features))
    probe = np.random.default_rng(args.seed + 3).normal(size=(256, args.features))
    (out / "request.json").write_text(json.dumps(oip_request(probe[:1])))
    (out / "request-batch.json").write_text(json.dumps(oip_request(probe)))
    instances = [dict(zip(names, map(float, row), strict=True)) for row in probe[:4]]
    (out / "request-v1.json").write_text(json.dumps({"instances": instances}))
    reference_rows = np.random.default_rng(args.seed + 4).normal(
        size=(REFERENCE_ROWS, args.features)
    )
    np.savetxt(out / "reference.csv", reference_rows, fmt="%.6f", delimiter=",")
    reference = np.loadtxt(out / "reference.csv", delimiter=",", ndmin=2)  # as a reader sees it
    comparison = compare(boosters, reference, args) if len(boosters) > 1 else {}
    for path in sorted(out.iterdir()):
        if path.suffix in (".txt", ".onnx", ".csv", ".json") and path.name != "models.json":
            digests[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests, comparison


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/models"))
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=100, help="boosting rounds")
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only-v1", action="store_true", help="skip the v2 and permuted variants")
    parser.add_argument("--force", action="store_true", help="retrain even when up to date")
    args = parser.parse_args(argv)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "force")}
    settings["format"] = FORMAT
    manifest_path = args.out / "models.json"
    if not args.force and manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("arguments") == settings and all(
            (args.out / name).is_file() for name in manifest.get("sha256", {})
        ):
            print(f"{args.out}: up to date")
            return 0
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    digests, comparison = write_models(args.out, args)
    manifest = {"arguments": settings, "sha256": digests, "versus_model": comparison}
    manifest_path.write_text(json.dumps(manifest, indent=2))
    print(
        f"{args.out}: wrote {', '.join(sorted(digests))} in {time.perf_counter() - started:.1f} s"
    )
    for stem, numbers in comparison.items():
        print(f"  {stem}: {numbers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
