"""`make bench-server`: modelfleet against MLServer 1.7 (mlserver-lightgbm), KServe's Python
ModelServer with a LightGBM model class, and a bare-ASGI ceiling; one process each, the
same 900-tree LightGBM model (300 rounds × 3 classes, 64 features), driven by wrk with
the same one-row OIP v2 request at 1, 16 and 64 connections, plus 256-row batches.

Peers live in their own venvs under ~/.cache/modelfleet/bench-server/venvs (never project
dependencies). Writes bench/results/server.json and the server table in docs/benchmarks.md.
Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = Path.home() / ".cache" / "modelfleet" / "bench-server"
PEERS = {
    "mlserver": ["mlserver==1.7.1", "mlserver-lightgbm==1.7.1"],
    "kserve": ["kserve==0.21.0", "lightgbm>=4.3,<5"],
}
MODEL_ARGS = ["--features", "64", "--classes", "3", "--iterations", "300", "--rows", "20000"]
CONNECTIONS = (1, 16, 64)
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BENCH_BODY"), "r"); wrk.body = f:read("*a"); f:close()
"""


def log(message: str) -> None:
    print(f"[bench-server] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    log("installing wrk (Debian package)")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk") or "wrk"


def ensure_venv(name: str, packages: list[str]) -> Path:
    """A venv of its own for a peer server; reinstalled only when its package list changes."""
    venv = CACHE / "venvs" / name
    stamp = venv / ".bench-packages"
    if stamp.is_file() and stamp.read_text() == "\n".join(packages):
        return venv
    log(f"creating {venv} with {' '.join(packages)}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    # -P and cwd: the repo's top-level operator/ folder must never shadow the stdlib's
    pip = [str(venv / "bin" / "python"), "-P", "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True, cwd=venv)
    subprocess.run([*pip, *packages], check=True, cwd=venv)
    stamp.write_text("\n".join(packages))
    return venv


def ensure_model(features: int = 64) -> Path:
    """The benchmark's model (900 trees) with `features` inputs, trained once into the cache."""
    out = CACHE / ("model" if features == 64 else f"model-{features}f")
    command = [sys.executable, str(REPO / "examples" / "train_models.py"), "--out", str(out)]
    model_args = list(MODEL_ARGS)
    model_args[model_args.index("--features") + 1] = str(features)
    subprocess.run([*command, *model_args, "--only-v1"], check=True)
    return out


@dataclass
class Server:
    """How to start one server, where it answers, and its process once started."""

    name: str
    command: list[str]
    env: dict[str, str]
    port: int
    infer_path: str = "/v2/models/model/infer"
    process: subprocess.Popen[bytes] | None = None
    batch_cpu_us_per_row: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path) -> float:
        """Seconds from spawn to a 200 from /v2/health/ready."""
        env = {**os.environ, "OMP_NUM_THREADS": "1", **self.env}
        with (log_dir / f"{self.name}.log").open("wb") as out:
            started = time.monotonic()
            self.process = subprocess.Popen(self.command, env=env, stdout=out, stderr=out)
        while time.monotonic() - started < 180:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {log_dir / (self.name + '.log')}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} not ready after 180 s")

    def pids(self) -> list[int]:
        assert self.process is not None
        children = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout.split()
        return [self.process.pid, *map(int, children)]

    def cpu_s(self) -> float:
        """CPU seconds used so far by the server and its children: unlike wall time, this
        does not move when other work shares the machine."""
        ticks = 0
        for pid in self.pids():
            stat = Path(f"/proc/{pid}/stat")
            if stat.exists():
                fields = stat.read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def wait_for_backend(self, backend: str, timeout_s: float = 120) -> bool:
        """modelfleet switches to the ONNX twin after ready; measure the steady state."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            meta = httpx.get(f"{self.url}/v2/models/model", timeout=5).json()
            if meta.get("parameters", {}).get("backend") == backend:
                return True
            time.sleep(0.2)
        return False

    def rss_mb(self) -> float:
        """Resident memory of the server and its child processes."""
        total_kb = 0
        for pid in self.pids():
            status = Path(f"/proc/{pid}/status")
            if status.exists():
                match = re.search(r"VmRSS:\s+(\d+)", status.read_text())
                total_kb += int(match.group(1)) if match else 0
        return round(total_kb / 1024, 1)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def modelfleet_server(model_dir: Path, work: Path) -> Server:
    port = free_port()
    env = {
        "MODELFLEET_MODEL_URI": str(model_dir / "model.txt"),
        "MODELFLEET_HOST": "127.0.0.1",
        "MODELFLEET_PORT": str(port),
        "MODELFLEET_METRICS_PORT": str(free_port()),
        "MODELFLEET_CACHE_DIR": str(work / "modelfleet-cache"),  # cold: converts at start
        "MODELFLEET_SHUTDOWN_DRAIN_SECONDS": "0",
    }
    return Server(
        "modelfleet", [str(Path(sys.executable).parent / "modelfleet"), "serve"], env, port
    )


def mlserver_server(model_dir: Path, work: Path) -> Server:
    port = free_port()
    root = work / "mlserver"
    (root / "model").mkdir(parents=True)
    settings = {
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "host": "127.0.0.1",
        "parallel_workers": 0,
        "debug": False,
    }
    (root / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": "model",
        "implementation": "mlserver_lightgbm.LightGBMModel",
        "parameters": {"uri": str(model_dir / "model.txt")},
    }
    (root / "model" / "model-settings.json").write_text(json.dumps(model_settings))
    venv = ensure_venv("mlserver", PEERS["mlserver"])
    return Server("mlserver", [str(venv / "bin" / "mlserver"), "start", str(root)], {}, port)


def kserve_server(model_dir: Path, work: Path) -> Server:
    port = free_port()
    venv = ensure_venv("kserve", PEERS["kserve"])
    command = [
        str(venv / "bin" / "python"),
        str(HERE / "kserve_lightgbm.py"),
        "--model-file",
        str(model_dir / "model.txt"),
        "--port",
        str(port),
    ]
    return Server("kserve", command, {}, port)


def ceiling_server(model_dir: Path, work: Path) -> Server:
    port = free_port()
    return Server(
        "asgi-ceiling", [sys.executable, str(HERE / "asgi_ceiling.py"), str(port)], {}, port
    )


SERVERS: dict[str, Callable[[Path, Path], Server]] = {
    "modelfleet": modelfleet_server,
    "mlserver": mlserver_server,
    "kserve": kserve_server,
    "asgi-ceiling": ceiling_server,
}


def _ms(text: str) -> float | None:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if match is None:
        return None  # wrk prints e.g. -nan when nothing completed
    number, unit = match.groups()
    scale = {"us": 0.001, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}[unit]
    return round(float(number) * scale, 3)


def run_wrk(
    wrk: str, url: str, body: Path, connections: int, seconds: int, script: Path
) -> dict[str, Any]:
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    out = subprocess.run(
        command,
        env={**os.environ, "BENCH_BODY": str(body)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": round(rps, 1),
        "p50_ms": _ms(re.search(r"50%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"99%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        **({"socket_errors": errors.group(0)} if errors else {}),
    }


def bench_one(
    server: Server, args: argparse.Namespace, model_dir: Path, work: Path, wrk: str
) -> tuple[list[dict[str, Any]], float]:
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    one_row, batch = model_dir / "request.json", model_dir / "request-batch.json"
    ready_s = server.start(work)
    ready_cpu_s = server.cpu_s()
    if server.name == "modelfleet" and not server.wait_for_backend("onnxruntime (converted)"):
        log("modelfleet did not switch to its ONNX twin: measuring the native backend")
    url = server.url + server.infer_path
    json_type = {"content-type": "application/json"}
    check = httpx.post(url, content=one_row.read_bytes(), headers=json_type, timeout=10)
    if check.status_code != 200:
        raise RuntimeError(f"{server.name} answered {check.status_code}: {check.text[:300]}")
    run_wrk(wrk, url, one_row, 16, 2, script)  # warm-up
    runs = []
    for connections in CONNECTIONS:
        cpu_before = server.cpu_s()
        result = run_wrk(wrk, url, one_row, connections, args.seconds, script)
        requests = result["rps"] * args.seconds
        cpu_us = (server.cpu_s() - cpu_before) / requests * 1e6 if requests else None
        result["cpu_us_per_request"] = round(cpu_us, 1) if cpu_us else None
        runs.append({"server": server.name, "connections": connections, **result})
        log(f"{server.name} c={connections}: {result}")
    cpu_before = server.cpu_s()
    batch_result = run_wrk(wrk, url, batch, 4, args.seconds, script)
    rows_per_s = round(batch_result["rps"] * 256, 1)
    batch_rows = batch_result["rps"] * args.seconds * 256
    cpu_us_per_row = (server.cpu_s() - cpu_before) / batch_rows * 1e6 if batch_rows else None
    server.batch_cpu_us_per_row = round(cpu_us_per_row, 2) if cpu_us_per_row else None
    rss = server.rss_mb()
    for entry in runs:
        entry.update(rss_mb=rss, ready_s=round(ready_s, 3), ready_cpu_s=round(ready_cpu_s, 2))
    log(f"{server.name}: ready {ready_s:.2f} s, RSS {rss} MB, 256-row batches {rows_per_s} rows/s")
    return runs, rows_per_s


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The targets of the model-server issue, computed at 16 connections."""
    at16 = {r["server"]: r for r in runs if r["connections"] == 16}
    ours = at16.get("modelfleet")
    result: dict[str, Any] = {}
    if ours and "mlserver" in at16:
        result["rps_vs_mlserver"] = round(ours["rps"] / at16["mlserver"]["rps"], 2)
        result["p99_vs_mlserver"] = round(ours["p99_ms"] / at16["mlserver"]["p99_ms"], 3)
        result["rss_vs_mlserver"] = round(ours["rss_mb"] / at16["mlserver"]["rss_mb"], 2)
    if ours and "asgi-ceiling" in at16:
        result["rps_vs_ceiling"] = round(ours["rps"] / at16["asgi-ceiling"]["rps"], 2)
    cpu = {name: r.get("cpu_us_per_request") for name, r in at16.items()}
    ours_cpu, mlserver_cpu = cpu.get("modelfleet"), cpu.get("mlserver")
    if ours_cpu and mlserver_cpu:
        result["cpu_per_request_vs_mlserver"] = round(ours_cpu / mlserver_cpu, 3)
    return result


def render_table(report: dict[str, Any]) -> str:
    lines = [
        f"Measured {report['date']} on {report['machine']['cores']} cores "
        f"(load average {report['load_average']['start']} at start) with `{report['command']}`; "
        f"{report['model']}; wrk -t1, {report['seconds_per_run']} s per run.",
        "",
        "| server | conns | req/s | p50 ms | p99 ms | non-2xx | server CPU µs/req | RSS MB "
        "| ready s (CPU s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in report["runs"]:
        lines.append(
            f"| {run['server']} | {run['connections']} | {run['rps']:,.0f} | {run['p50_ms']} | "
            f"{run['p99_ms']} | {run['non2xx']} | {run['cpu_us_per_request']} | {run['rss_mb']} "
            f"| {run['ready_s']} ({run['ready_cpu_s']}) |"
        )
    lines += [
        "",
        "| server | rows/s in 256-row requests (4 connections) | server CPU µs/row |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {name} | {value:,.0f} | {report['batch_cpu_us_per_row'].get(name)} |"
        for name, value in report["batch_rows_per_s"].items()
    ]
    lines += ["", f"At 16 connections: `{json.dumps(report['summary'])}`"]
    return "\n".join(lines)


def write_docs(path: Path, table: str) -> None:
    begin, end = "<!-- bench-server:begin -->", "<!-- bench-server:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{table}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + f"\n\n## Model server (`make bench-server`)\n\n{block}\n"
    path.write_text(text)


def _cpu_per_unit(
    server: Server, wrk: str, body: Path, connections: int, seconds: int, script: Path, rows: int
) -> tuple[float, dict[str, Any]]:
    """Server CPU µs per request (rows=1) or per row (rows=256) over one wrk run."""
    cpu_before = server.cpu_s()
    result = run_wrk(wrk, server.url + server.infer_path, body, connections, seconds, script)
    units = result["rps"] * seconds * rows
    return (server.cpu_s() - cpu_before) / units * 1e6, result


OVERHEADS = {
    # key in server.json: (flag, env var, value off, value on, what, docs heading)
    "prediction_metrics_overhead": (
        "--prediction-overhead", "MODELFLEET_PREDICTION_METRICS", "false", "true",
        "prediction metrics", "Cost of the prediction metrics",
    ),
    "live_sample_overhead": (
        "--live-sample-overhead", "MODELFLEET_LIVE_SAMPLE_ROWS", "0", "1024",
        "live sample (1024 rows)", "Cost of the live sample",
    ),
}  # fmt: skip
REPLAY_CALLS = 40


def overhead(args: argparse.Namespace, wrk: str, model_dir: Path, key: str) -> dict[str, Any]:
    """Our server with a feature off and on (OVERHEADS[key]), both started at once and
    measured in alternation (off, on, off, on, …) so that the load of a shared machine falls
    on both alike; the result is the median CPU per request (one row, 16 connections) and
    per row (256-row batches, 4 connections) of each. For the live sample, also the time of
    a 512-row replay on the metrics port of the idle server."""
    flag, env_name, off_value, on_value = OVERHEADS[key][:4]
    variants = {
        "off": Variant(model_dir, {env_name: off_value}),
        "on": Variant(model_dir, {env_name: on_value}),
    }
    replay: dict[str, float] = {}

    def after(servers: dict[str, Server]) -> None:
        if key == "live_sample_overhead":
            replay.update(_replay_ms(servers["on"], model_dir))

    results = alternate(args, wrk, key, variants, after)
    return {
        "command": f"python bench/server/run.py {flag}",
        "rounds": args.rounds,
        "seconds_per_run": args.seconds,
        **compare_medians(results, "off", "on"),
        **({"replay_512_rows": replay} if replay else {}),
        "samples": _rounded(results),
    }


@dataclass
class Variant:
    """One server of an alternating comparison: its model and the env that sets it apart."""

    model_dir: Path
    env: dict[str, str]


def alternate(
    args: argparse.Namespace,
    wrk: str,
    label: str,
    variants: dict[str, Variant],
    after: Callable[[dict[str, Server]], None] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Start every variant's server, then drive them in rounds, each round in the reverse
    order of the last, so that the load of a shared machine falls on all alike; per variant
    the server CPU per request (one row, 16 connections) and per row (256-row batches,
    4 connections) of every round, and its req/s."""
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        servers: dict[str, Server] = {}
        try:
            for name, variant in variants.items():
                work = Path(tmp) / name
                work.mkdir()
                server = modelfleet_server(variant.model_dir, Path(tmp))
                server.name = f"modelfleet-{label}-{name}"
                server.env.update(variant.env)
                server.start(work)
                servers[name] = server
                # one after the other: the next reuses the first's cached ONNX conversion
                if not server.wait_for_backend("onnxruntime (converted)"):
                    log(f"{server.name} did not switch to its ONNX twin")
                results[name] = {"request": [], "row": [], "rps": []}
            script = Path(tmp) / "post.lua"
            script.write_text(WRK_SCRIPT)
            for name, server in servers.items():
                one_row = variants[name].model_dir / "request.json"
                run_wrk(wrk, server.url + server.infer_path, one_row, 16, 2, script)  # warm-up
            for round_index in range(args.rounds):
                order = list(servers) if round_index % 2 == 0 else list(reversed(servers))
                for name in order:
                    server, model_dir = servers[name], variants[name].model_dir
                    one_row, batch = model_dir / "request.json", model_dir / "request-batch.json"
                    cpu, result = _cpu_per_unit(server, wrk, one_row, 16, args.seconds, script, 1)
                    results[name]["request"].append(cpu)
                    results[name]["rps"].append(result["rps"])
                    cpu_row, _ = _cpu_per_unit(server, wrk, batch, 4, args.seconds, script, 256)
                    results[name]["row"].append(cpu_row)
                    log(f"round {round_index} {name}: {cpu:.1f} µs/request, {cpu_row:.2f} µs/row")
            if after is not None:
                after(servers)
        finally:
            for server in servers.values():
                server.stop()
    return results


def compare_medians(
    results: dict[str, dict[str, list[float]]], off: str, on: str
) -> dict[str, Any]:
    """Medians of the `off` and `on` variants' samples, and the relative overhead of `on`."""
    import statistics

    def median(variant: str, name: str) -> float:
        return round(statistics.median(results[variant][name]), 2)

    off_request, on_request = median(off, "request"), median(on, "request")
    off_row, on_row = median(off, "row"), median(on, "row")
    return {
        "cpu_us_per_request": {"off": off_request, "on": on_request},
        "cpu_us_per_row_256": {"off": off_row, "on": on_row},
        "rps_16_connections": {"off": median(off, "rps"), "on": median(on, "rps")},
        "overhead_per_request": round(on_request / off_request - 1, 4),
        "overhead_per_row_256": round(on_row / off_row - 1, 4),
    }


def _rounded(results: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    return {v: {k: [round(x, 2) for x in xs] for k, xs in r.items()} for v, r in results.items()}


BASELINE_FEATURES = (16, 64)
IN_PROCESS_CALLS = 25_600  # one-row batches per in-process timing (100 flushes); /64 of 256 rows


def baseline_overhead(args: argparse.Namespace, wrk: str) -> dict[str, Any]:
    """Drift monitoring's cost: for the same 900-tree model shape at 16 and 64 features, our
    server without and with `MODELFLEET_BASELINE_URI` (the model's reference.csv, 512 rows,
    10 bins), all four driven in the same alternating rounds; plus the counting measured in
    process (process CPU time, no HTTP), which the noise of a shared machine barely moves."""
    models = {features: ensure_model(features) for features in BASELINE_FEATURES}
    variants: dict[str, Variant] = {}
    for features, model_dir in models.items():
        baseline = {"MODELFLEET_BASELINE_URI": str(model_dir / "reference.csv")}
        variants[f"{features}f-off"] = Variant(model_dir, {})
        variants[f"{features}f-on"] = Variant(model_dir, baseline)
    results = alternate(args, wrk, "baseline", variants)
    by_features: dict[str, Any] = {}
    for features, model_dir in models.items():
        measured = compare_medians(results, f"{features}f-off", f"{features}f-on")
        counting = in_process_cost(model_dir)
        request_cpu = measured["cpu_us_per_request"]["off"]
        row_cpu = measured["cpu_us_per_row_256"]["off"]
        counting["share_of_request_cpu"] = round(counting["extra_us_per_request"] / request_cpu, 4)
        counting["share_of_row_cpu"] = round(counting["extra_us_per_row_256"] / row_cpu, 4)
        by_features[str(features)] = {**measured, "in_process": counting}
    return {
        "command": "python bench/server/run.py --baseline-overhead",
        "rounds": args.rounds,
        "seconds_per_run": args.seconds,
        "baseline": "the model's reference.csv: 512 rows, 10 bins per feature",
        "features": by_features,
        "samples": _rounded(results),
    }


def in_process_cost(model_dir: Path) -> dict[str, float]:
    """Process CPU µs that the prediction metrics spend per one-row batch and per row of
    256-row batches (observe + the bulk flush), without and with a baseline: best of 5."""
    import numpy as np

    from modelfleet.server.baseline import read_rows
    from modelfleet.server.model import load_model
    from modelfleet.server.predictions import PredictionStats
    from modelfleet.server.settings import ServerSettings

    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        settings = ServerSettings(
            model_uri=str(model_dir / "model.txt"), cache_dir=Path(tmp), lightgbm_backend="native"
        )
        model = load_model(settings)
        width = model.metadata.n_features
        reference = read_rows(str(model_dir / "reference.csv"), 100_000, width)
    request = json.loads((model_dir / "request-batch.json").read_text())["inputs"][0]
    batch = np.asarray(request["data"], dtype=np.float64).reshape(-1, width)
    one_row = np.ascontiguousarray(batch[:1])
    outputs = {size: model.runtime.predict(rows) for size, rows in ((1, one_row), (256, batch))}

    def cost(with_baseline: bool, rows: Any, calls: int) -> float:
        best = math.inf
        for _ in range(5):
            stats = PredictionStats({"deployment": "bench"}, model.metadata)
            if with_baseline:
                stats.use_baseline(reference, model.runtime.predict(reference), 10)
            started = time.process_time()
            for _ in range(calls):
                stats.observe(rows, outputs[rows.shape[0]])
            stats.flush()
            best = min(best, (time.process_time() - started) / calls / rows.shape[0] * 1e6)
        return best

    figures = {
        "us_per_request_off": cost(False, one_row, IN_PROCESS_CALLS),
        "us_per_request_on": cost(True, one_row, IN_PROCESS_CALLS),
        "us_per_row_256_off": cost(False, batch, IN_PROCESS_CALLS // 64),
        "us_per_row_256_on": cost(True, batch, IN_PROCESS_CALLS // 64),
    }
    figures["extra_us_per_request"] = figures["us_per_request_on"] - figures["us_per_request_off"]
    figures["extra_us_per_row_256"] = figures["us_per_row_256_on"] - figures["us_per_row_256_off"]
    return {key: round(value, 3) for key, value in figures.items()}


def write_baseline_overhead(args: argparse.Namespace, measured: dict[str, Any]) -> None:
    """`baseline_overhead` in server.json (other keys untouched) and its table in the docs."""
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    load = round(os.getloadavg()[0], 2)
    report["baseline_overhead"] = {"date": date, "load_average": load, **measured}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "| features | baseline | CPU µs per request (1 row, 16 conns) | CPU µs per row "
        "(256-row batches) | req/s | counting in process, µs per request / per row |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for features, figures in measured["features"].items():
        request, row = figures["cpu_us_per_request"], figures["cpu_us_per_row_256"]
        rps, counting = figures["rps_16_connections"], figures["in_process"]
        lines += [
            f"| {features} | off | {request['off']} | {row['off']} | {rps['off']} | "
            f"{counting['us_per_request_off']} / {counting['us_per_row_256_off']} |",
            f"| {features} | on | {request['on']} | {row['on']} | {rps['on']} | "
            f"{counting['us_per_request_on']} / {counting['us_per_row_256_on']} |",
            f"| {features} | overhead | {figures['overhead_per_request']:+.1%} | "
            f"{figures['overhead_per_row_256']:+.1%} | | "
            f"{counting['share_of_request_cpu']:+.1%} / {counting['share_of_row_cpu']:+.1%} |",
        ]
    lines += [
        "",
        f"Medians of {measured['rounds']} alternating rounds of {measured['seconds_per_run']} s "
        f"each, four servers in the same rounds (`{measured['command']}`, {date}, load average "
        f"{load} on {os.cpu_count()} cores); the last column is the counting alone, in process "
        "(best of 5, process CPU time), and its share of the server's CPU without a baseline.",
    ]
    begin, end = "<!-- bench-baseline:begin -->", "<!-- bench-baseline:end -->"
    text = args.docs.read_text() if args.docs.exists() else "# Benchmarks\n"
    block = f"{begin}\n" + "\n".join(lines) + f"\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + f"\n\n### Cost of drift monitoring (a baseline)\n\n{block}\n"
    args.docs.write_text(text)


def _replay_ms(server: Server, model_dir: Path) -> dict[str, float]:
    """Wall time and server CPU of a 512-row `POST /modelfleet/v1/replay` (the paired gate's
    default), on an otherwise idle server: what one analysis costs a pod."""
    import statistics

    rows = json.loads((model_dir / "request-batch.json").read_text())["inputs"][0]
    width = rows["shape"][1]
    data = rows["data"] * 2  # 256 rows twice: 512
    body = {"rows": [data[i : i + width] for i in range(0, len(data), width)]}
    url = f"http://127.0.0.1:{server.env['MODELFLEET_METRICS_PORT']}/modelfleet/v1/replay"
    times = []
    with httpx.Client(timeout=30) as client:
        client.post(url, json=body).raise_for_status()  # warm-up
        cpu_before = server.cpu_s()
        for _ in range(REPLAY_CALLS):
            started = time.perf_counter()
            client.post(url, json=body).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
        cpu_ms = (server.cpu_s() - cpu_before) / REPLAY_CALLS * 1000
    return {
        "calls": REPLAY_CALLS,
        "p50_ms": round(statistics.median(times), 2),
        "max_ms": round(max(times), 2),
        "server_cpu_ms": round(cpu_ms, 2),
    }


def write_overhead(args: argparse.Namespace, key: str, measured: dict[str, Any]) -> None:
    """Add the result to server.json (other keys untouched) and to docs/benchmarks.md."""
    what, heading = OVERHEADS[key][4:]
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report[key] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average": round(os.getloadavg()[0], 2),
        **measured,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    request, row = measured["cpu_us_per_request"], measured["cpu_us_per_row_256"]
    rps = measured["rps_16_connections"]
    lines = [
        f"| {what} | CPU µs per request (1 row, 16 conns) | CPU µs per row (256-row batches) | req/s |",
        "|---|---:|---:|---:|",
        f"| off | {request['off']} | {row['off']} | {rps['off']} |",
        f"| on | {request['on']} | {row['on']} | {rps['on']} |",
        f"| overhead | {measured['overhead_per_request']:+.1%} | {measured['overhead_per_row_256']:+.1%} | |",
        "",
        f"Medians of {measured['rounds']} alternating rounds of {measured['seconds_per_run']} s "
        f"each (`{measured['command']}`, {report[key]['date']}).",
    ]  # fmt: skip
    if "replay_512_rows" in measured:
        replay = measured["replay_512_rows"]
        lines.append(
            f"A 512-row replay on the metrics port of the idle server: "
            f"{replay['server_cpu_ms']} ms of server CPU; {replay['p50_ms']} ms of wall time "
            f"(median of {replay['calls']}, max {replay['max_ms']} ms, client included, at "
            f"load average {report[key]['load_average']} on {os.cpu_count()} cores)."
        )
    marker = "prediction-metrics" if key == "prediction_metrics_overhead" else "live-sample"
    begin, end = f"<!-- bench-{marker}:begin -->", f"<!-- bench-{marker}:end -->"
    text = args.docs.read_text() if args.docs.exists() else "# Benchmarks\n"
    block = f"{begin}\n" + "\n".join(lines) + f"\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + f"\n\n### {heading}\n\n{block}\n"
    args.docs.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "8")))
    parser.add_argument("--servers", nargs="+", default=list(SERVERS), choices=list(SERVERS))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "server.json")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument(
        "--prediction-overhead",
        action="store_true",
        help="only our server, prediction metrics off vs on, in alternating rounds",
    )
    parser.add_argument(
        "--live-sample-overhead",
        action="store_true",
        help="only our server, live sample off vs 1024 rows, in alternating rounds, "
        "and the time of a 512-row replay",
    )
    parser.add_argument(
        "--baseline-overhead",
        action="store_true",
        help="only our server, without and with a drift-monitoring baseline, at 16 and 64 "
        "features, in alternating rounds, plus the counting measured in process",
    )
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    wrk = ensure_wrk()
    if args.baseline_overhead:
        write_baseline_overhead(args, baseline_overhead(args, wrk))
        log(f"wrote baseline_overhead to {args.out} and {args.docs}")
        return 0
    model_dir = ensure_model()
    for key, wanted in (
        ("prediction_metrics_overhead", args.prediction_overhead),
        ("live_sample_overhead", args.live_sample_overhead),
    ):
        if wanted:
            write_overhead(args, key, overhead(args, wrk, model_dir, key))
            log(f"wrote {key} to {args.out} and {args.docs}")
            return 0
    load_start = os.getloadavg()[0]
    runs: list[dict[str, Any]] = []
    batch: dict[str, float] = {}
    batch_cpu: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        for name in args.servers:
            work = Path(tmp) / name
            work.mkdir()
            server = SERVERS[name](model_dir, work)
            try:
                server_runs, batch[name] = bench_one(server, args, model_dir, work, wrk)
                batch_cpu[name] = server.batch_cpu_us_per_row
                runs += server_runs
            finally:
                server.stop()
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "memory_mb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20,
        },
        "command": "make bench-server",
        "model": "LightGBM 300 rounds × 3 classes = 900 trees, 64 features; one-row OIP v2 request",
        "seconds_per_run": args.seconds,
        "load_average": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "peers": PEERS,
        "runs": runs,
        "batch_rows_per_s": batch,
        "batch_cpu_us_per_row": batch_cpu,
        "summary": summary(runs),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    write_docs(args.docs, render_table(report))
    log(f"wrote {args.out} and {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
