"""`make bench-server-cache`: does the prediction cache (spec.server.cache) pay? Our server
without a cache, with the in-process cache and with a Redis one (a redis-server started here
on 127.0.0.1), on `make bench-server`'s 900-tree LightGBM model (64 features), one-row OIP v2
requests from wrk whose rows repeat at a given ratio (the rest are rows never seen before):
latency p50/p99, requests/s, server CPU per request (and Redis's) and the hit rate the server
counted. Then, in process, what each step costs on its own: scoring one row, an in-process
lookup, a Redis round trip. Writes bench/results/server-cache.json; not part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "hack"))
sys.path.append(str(REPO))  # appended: the repo's operator/ must not shadow the stdlib module

from bench.server.results import RunStart, write_result  # noqa: E402
from bench.server.run import (  # noqa: E402
    MODEL_ARGS,
    Server,
    ensure_model,
    ensure_wrk,
    modelfleet_server,
    run_wrk,
)
from tests.redis_server import running_redis  # noqa: E402

HOT_ROWS = 200  # distinct rows that repeat; the others are each asked once
# wrk builds each request: with probability REPEAT one of the hot rows, else a new row (the
# first feature replaced by a value never used before); the 63 other features as request.json.
WRK_SCRIPT = """
local function read(name) local f = io.open(os.getenv(name), "r"); local s = f:read("*a"); f:close(); return s end
local prefix, suffix = read("BENCH_PREFIX"), read("BENCH_SUFFIX")
local repeat_ratio, hot = tonumber(os.getenv("BENCH_REPEAT")), tonumber(os.getenv("BENCH_HOT"))
local run = tonumber(os.getenv("BENCH_RUN"))  -- new rows of one run are never another run's
local counter = 0
math.randomseed(7)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local value
  if math.random() < repeat_ratio then
    value = string.format("%.6f", math.random(0, hot - 1) * 0.01)
  else
    counter = counter + 1
    value = string.format("%.9f", 10 + run + counter * 1e-6)
  end
  return wrk.format(nil, nil, nil, prefix .. value .. suffix)
end
"""


_runs = itertools.count(1)


def log(message: str) -> None:
    print(f"[bench-server-cache] {message}", file=sys.stderr, flush=True)


def split_request(model_dir: Path, work: Path) -> dict[str, str]:
    """request.json cut around its first value, for the Lua script to put a value between."""
    request = json.loads((model_dir / "request.json").read_text())
    data = request["inputs"][0]["data"]
    marker = 123456.654321
    request["inputs"][0]["data"] = [marker, *data[1:]]
    text = json.dumps(request, separators=(",", ":"))
    prefix, suffix = text.split(repr(marker))
    (work / "prefix").write_text(prefix)
    (work / "suffix").write_text(suffix)
    return {"BENCH_PREFIX": str(work / "prefix"), "BENCH_SUFFIX": str(work / "suffix")}


def cache_counts(server: Server) -> dict[str, float]:
    metrics = f"http://127.0.0.1:{server.env['MODELFLEET_METRICS_PORT']}/metrics"
    counts = {"hit": 0.0, "miss": 0.0}
    for line in httpx.get(metrics, timeout=5).text.splitlines():
        if line.startswith("modelfleet_cache_requests_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            counts[result] = float(line.rsplit(" ", 1)[1])
    return counts


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    server: Server, redis_pid: int | None, wrk: str, ratio: float, connections: int,
    args: argparse.Namespace, script: Path,
) -> dict[str, Any]:  # fmt: skip
    """One wrk run at `ratio` repeated rows: latency, rate, CPU and the rows looked up."""
    os.environ.update(BENCH_REPEAT=str(ratio), BENCH_RUN=str(next(_runs)))
    before, cpu_before = cache_counts(server), server.cpu_s()
    redis_before = process_cpu_s(redis_pid) if redis_pid else 0.0
    url = server.url + server.infer_path
    result: dict[str, Any] = run_wrk(wrk, url, script, connections, args.seconds, script)
    requests = result["rps"] * args.seconds
    after = cache_counts(server)
    result["cpu_us"] = (server.cpu_s() - cpu_before) / requests * 1e6
    if redis_pid:
        result["redis_cpu_us"] = (process_cpu_s(redis_pid) - redis_before) / requests * 1e6
    result["hits"], result["misses"] = after["hit"] - before["hit"], after["miss"] - before["miss"]
    return result


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds of one variant, ratio and connection count; hits pooled."""

    def median(key: str, digits: int = 3) -> float | None:
        values = [s[key] for s in samples if s.get(key) is not None]
        return round(statistics.median(values), digits) if values else None

    hits, misses = sum(s["hits"] for s in samples), sum(s["misses"] for s in samples)
    summary = {
        "rps": median("rps", 0),
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "server_cpu_us_per_request": median("cpu_us", 1),
        "hit_rate": round(hits / (hits + misses), 3) if hits + misses else None,
        "non2xx": sum(s["non2xx"] for s in samples),
    }
    if any("redis_cpu_us" in s for s in samples):
        summary["redis_cpu_us_per_request"] = median("redis_cpu_us", 1)
    return summary


def start_servers(model_dir: Path, work: Path, redis_url: str) -> dict[str, Server]:
    caches: dict[str, dict[str, str]] = {
        "off": {},
        "memory": {"MODELFLEET_CACHE": "memory"},
        "redis": {"MODELFLEET_CACHE": "redis", "MODELFLEET_CACHE_REDIS_URL": redis_url},
    }
    servers: dict[str, Server] = {}
    for cache, env in caches.items():
        server = modelfleet_server(model_dir, work)
        server.name = f"cache-{cache}"
        server.env.update(env, MODELFLEET_CACHE_DIR=str(work / "models"))  # converted once
        servers[cache] = server
        server.start(work)
        if not server.wait_for_backend("onnxruntime (converted)"):
            log(f"{server.name}: no switch to the ONNX twin, measuring the native backend")
    return servers


def bench_servers(args: argparse.Namespace, model_dir: Path, wrk: str) -> list[dict[str, Any]]:
    """The three servers up at once, measured in alternating rounds (the order rotating each
    round) so that the load of a shared machine falls on all of them alike; medians."""
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-server-cache-") as tmp:
        work = Path(tmp)
        script = work / "rows.lua"
        script.write_text(WRK_SCRIPT)
        os.environ.update(split_request(model_dir, work), BENCH_HOT=str(HOT_ROWS))
        with running_redis(work) as redis:
            servers: dict[str, Server] = {}
            try:
                servers = start_servers(model_dir, work, redis.url)
                for ratio, conns in itertools.product(args.repeat_ratios, args.connections):
                    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
                    order = list(servers)
                    for name in order if conns == args.connections[0] else ():
                        # warm-up, once per ratio: the hot rows get cached
                        os.environ.update(BENCH_REPEAT=str(ratio), BENCH_RUN=str(next(_runs)))
                        run_wrk(wrk, servers[name].url + servers[name].infer_path, script,
                                conns, 1, script)  # fmt: skip
                    for _ in range(args.rounds):
                        for name in order:
                            redis_pid = redis.process.pid if name == "redis" else None
                            sample = measure(
                                servers[name], redis_pid, wrk, ratio, conns, args, script
                            )
                            samples[name].append(sample)
                        order = order[1:] + order[:1]
                    for name, taken in samples.items():
                        summary = summarise(taken)
                        runs.append(
                            {"cache": name, "repeat_ratio": ratio, "connections": conns, **summary}
                        )
                        log(f"cache={name} repeat={ratio} c={conns}: {summary}")
            finally:
                for server in servers.values():
                    server.stop()
    return runs


def in_process_costs(model_dir: Path, calls: int = 1000) -> dict[str, float]:
    """µs of: scoring one row with either engine (median), a cache hit in process and in Redis
    over loopback (median wall, mean CPU), and a miss with its write (mean CPU)."""
    import numpy as np

    from modelfleet.server.cache import CachedScorer, MemoryStore, RedisStore
    from modelfleet.server.model import load_model
    from modelfleet.server.settings import ServerSettings

    with tempfile.TemporaryDirectory(prefix="bench-server-cache-") as tmp:
        rows = json.loads((model_dir / "request.json").read_text())["inputs"][0]
        row = np.asarray(rows["data"], dtype=np.float64).reshape(1, -1)
        figures: dict[str, float] = {}

        def timed(name: str, call: Any) -> None:
            samples = []
            for _ in range(calls):
                started = time.perf_counter()
                call()
                samples.append((time.perf_counter() - started) * 1e6)
            figures[name] = round(statistics.median(samples), 1)

        for engine, file in (("lightgbm", "model.txt"), ("onnx", "model.onnx")):
            uri = str(model_dir / file)
            model = load_model(ServerSettings(model_uri=uri, cache_dir=Path(tmp)))
            typed = row.astype(model.metadata.input_dtype)  # as the codec decodes it
            timed(f"score_one_row_{engine}_us", lambda: model.runtime.predict(typed))  # noqa: B023
        answer = model.runtime.predict(typed)

        async def lookups(store: Any, name: str) -> None:
            """A hit (wall median and process CPU), then a miss: lookup, scoring and the
            background write, in process CPU per row (the writes awaited before reading it)."""
            scorer = CachedScorer(store, b"bench\0", lambda r, o: None, lambda h, m: None)
            store.put_many(scorer.keys(typed), [answer])
            await asyncio.sleep(0.05)  # the Redis write is in the background
            samples, cpu = [], time.process_time()
            for _ in range(calls):
                started = time.perf_counter()
                await scorer.score(typed, _never_scored)
                samples.append((time.perf_counter() - started) * 1e6)
            figures[f"hit_{name}_us"] = round(statistics.median(samples), 1)
            figures[f"hit_{name}_cpu_us"] = round((time.process_time() - cpu) / calls * 1e6, 1)
            fresh = np.repeat(typed, calls, axis=0)
            fresh[:, 0] = np.arange(calls) + 1000.0  # rows never seen
            cpu = time.process_time()
            for index in range(calls):
                await scorer.score(fresh[index : index + 1], _score_with(model))
            await store.close()  # waits for the writes
            figures[f"miss_{name}_cpu_us"] = round((time.process_time() - cpu) / calls * 1e6, 1)

        asyncio.run(lookups(MemoryStore(10 * calls, 60), "memory"))
        with running_redis(Path(tmp)) as redis:
            asyncio.run(lookups(RedisStore(redis.url, 60), "redis"))
    return figures


async def _never_scored(rows: Any) -> Any:
    raise AssertionError("a hit was expected")


def _score_with(model: Any) -> Any:
    async def score(rows: Any) -> Any:
        return model.runtime.predict(rows)

    return score


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "1")))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--repeat-ratios", type=float, nargs="+", default=[0.0, 0.5, 0.9],
        help="share of requests asking one of the hot rows again",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "server-cache.json"
    )
    args = parser.parse_args()
    wrk = ensure_wrk()
    model_dir = ensure_model()
    start = RunStart()
    costs = in_process_costs(model_dir)
    log(f"in process: {costs}")
    runs = bench_servers(args, model_dir, wrk)
    figures = {
        "model": "LightGBM 300 rounds × 3 classes = 900 trees, 64 features "
        f"({' '.join(MODEL_ARGS)}); one-row OIP v2 requests, ONNX twin backend",
        "load_generator": f"wrk -t1; per ratio a 1 s warm-up, then for each connection count "
        f"{args.rounds} alternating rounds of {args.seconds} s per server (medians); "
        f"{HOT_ROWS} hot rows asked at the repeat ratio, every other row new",
        "in_process": costs,
        "runs": runs,
    }
    seconds = write_result(args.out, "make bench-server-cache", start, figures)
    log(f"wrote {args.out} in {seconds} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
