"""`make bench-server-auth`: what authentication costs the model server per request. Real
`modelfleet serve` processes on 127.0.0.1, up at once, on the example model (examples/models:
100 rounds × 3 classes, 16 features, served by its ONNX twin): no auth (the ceiling), an API
key, bearer JWTs from a local issuer started here (an RS256 and an ES256 key, a JWKS
endpoint), and JWTs under a per-pod rate limit. One client sends one-row OIP v2 requests one
after the other on a kept-alive connection, so a latency is one request's whole cost. A JWT is
sent reused (the server remembers a token that passed until its exp) or fresh each request
(the uncached check). The modes take turns in rounds, the order rotating, so that the load of
a shared machine falls on all alike; per mode: median and p99 latency, requests/s, the
server's CPU per request and what each adds over no auth. First, each check alone in this
process (the server's Authenticator and RateLimiter with the same settings, median µs), free
of HTTP and the client. Writes bench/results/server-auth.json; not part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.append(str(REPO))  # appended: the repo's operator/ must not shadow the stdlib module

from bench.server.results import RunStart, write_result  # noqa: E402
from bench.server.run import Server, modelfleet_server  # noqa: E402
from tests.jwt_issuer import AUDIENCE, ISSUER, LocalIssuer, SigningKey, claims  # noqa: E402

MODELS = REPO / "examples" / "models"
API_KEY = "bench-" + uuid.uuid4().hex
ONNX_TWIN = "onnxruntime (converted)"
TOKEN_LIFETIME_S = 3600  # longer than the run: a reused token stays valid throughout
# per pod, far above what one client sends: every request is admitted, so the cost is the check
RATE_LIMIT = {
    "MODELFLEET_RATE_LIMIT_REQUESTS_PER_MINUTE": "1000000000",
    "MODELFLEET_RATE_LIMIT_BURST": "1000",
    "MODELFLEET_RATE_LIMIT_KEY": "subject",
}

Credentials = Callable[[int], Sequence[str | None]]  # the Authorization header of each request


@dataclass
class Mode:
    """One measured case: which server, and the credential each request carries."""

    server: str
    credentials: Credentials
    latencies_s: list[float] = field(default_factory=list)
    server_cpu_s: float = 0.0


def log(message: str) -> None:
    print(f"[bench-server-auth] {message}", file=sys.stderr, flush=True)


def example_models() -> Path:
    """examples/models, trained unless up to date (the trainer does nothing then)."""
    trainer = REPO / "examples" / "train_models.py"
    subprocess.run([sys.executable, str(trainer), "--out", str(MODELS)], check=True)
    return MODELS


def server_envs(issuer: LocalIssuer, api_keys: Path) -> dict[str, dict[str, str]]:
    jwt = {
        "MODELFLEET_JWT_ISSUER": ISSUER,
        "MODELFLEET_JWT_JWKS_URI": issuer.jwks_uri,
        "MODELFLEET_JWT_AUDIENCES": AUDIENCE,
    }
    return {
        "none": {},
        "api-key": {"MODELFLEET_API_KEY_FILE": str(api_keys)},
        "jwt": jwt,
        "jwt-rate-limit": {**jwt, **RATE_LIMIT},
    }


def reused_token(key: SigningKey) -> Credentials:
    """One token, signed once and sent with every request."""
    header = "Bearer " + key.sign(claims(TOKEN_LIFETIME_S))
    return lambda count: [header] * count


def fresh_tokens(key: SigningKey) -> Callable[[int], list[str]]:
    """A token never sent before for each request (its own jti), signed before the clock."""

    def sign(count: int) -> list[str]:
        tokens = (key.sign(claims(TOKEN_LIFETIME_S, jti=uuid.uuid4().hex)) for _ in range(count))
        return ["Bearer " + token for token in tokens]

    return sign


def build_modes(keys: dict[str, SigningKey]) -> dict[str, Mode]:
    return {
        "none": Mode("none", lambda count: [None] * count),
        "api-key": Mode("api-key", lambda count: ["Bearer " + API_KEY] * count),
        "jwt-rs256-reused": Mode("jwt", reused_token(keys["RS256"])),
        "jwt-rs256-fresh": Mode("jwt", fresh_tokens(keys["RS256"])),
        "jwt-es256-reused": Mode("jwt", reused_token(keys["ES256"])),
        "jwt-es256-fresh": Mode("jwt", fresh_tokens(keys["ES256"])),
        "jwt-rs256-reused-rate-limit": Mode("jwt-rate-limit", reused_token(keys["RS256"])),
    }


@contextmanager
def running_servers(
    model_dir: Path, work: Path, envs: dict[str, dict[str, str]]
) -> Iterator[dict[str, Server]]:
    """Our servers, one per auth setting, on the ONNX twin: the first (no auth) converts it
    and switches; the others find it in the shared cache and load it at start, which their log
    says (their metadata route wants a credential). Stopped on leaving."""
    servers: dict[str, Server] = {}
    try:
        for name, env in envs.items():
            server = modelfleet_server(model_dir, work)
            server.name = f"auth-{name}"
            server.env.update(env, MODELFLEET_CACHE_DIR=str(work / "models"))
            servers[name] = server
            server.start(work)
            on_twin = (
                server.wait_for_backend(ONNX_TWIN)
                if not env
                else f'"backend":"{ONNX_TWIN}"' in (work / f"{server.name}.log").read_text()
            )
            if not on_twin:
                log(f"{server.name}: not on the ONNX twin, measuring the native backend")
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def send_sequentially(
    connection: http.client.HTTPConnection,
    server: Server,
    body: bytes,
    authorizations: Sequence[str | None],
) -> list[float]:
    """Seconds of each request, sent one after the other on a kept-alive connection; any
    answer but 200 stops the benchmark (a refused request would measure the refusal)."""
    latencies = []
    for authorization in authorizations:
        headers = {"content-type": "application/json"}
        if authorization is not None:
            headers["authorization"] = authorization
        started = time.perf_counter()
        connection.request("POST", server.infer_path, body, headers)
        response = connection.getresponse()
        answer = response.read()
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"{server.name} answered {response.status}: {answer[:300]!r}")
    return latencies


def measure(
    modes: dict[str, Mode], servers: dict[str, Server], body: bytes, args: argparse.Namespace
) -> None:
    """A warm-up per mode, then many short rounds, each mode in turn, the order rotating each
    round: a change of the machine's load lands on every mode alike. A connection per mode."""
    per_round = max(1, args.requests // args.rounds)
    connections = {
        name: http.client.HTTPConnection("127.0.0.1", servers[mode.server].port, timeout=10)
        for name, mode in modes.items()
    }
    try:
        for name, mode in modes.items():
            send = mode.credentials(args.warmup)
            send_sequentially(connections[name], servers[mode.server], body, send)
        order = list(modes)
        for round_number in range(1, args.rounds + 1):
            for name in order:
                mode, server = modes[name], servers[modes[name].server]
                send = mode.credentials(per_round)  # signed before the clock starts
                cpu_before = server.cpu_s()
                mode.latencies_s += send_sequentially(connections[name], server, body, send)
                mode.server_cpu_s += server.cpu_s() - cpu_before
            order = order[1:] + order[:1]
            if round_number % 10 == 0:
                log(f"round {round_number}/{args.rounds} done")
    finally:
        for connection in connections.values():
            connection.close()


def summarise(modes: dict[str, Mode]) -> dict[str, dict[str, Any]]:
    """Per mode: latency median and p99 (ms), requests/s, server CPU µs per request, and the
    median and CPU it adds over no auth (µs)."""
    results: dict[str, dict[str, Any]] = {}
    for name, mode in modes.items():
        latencies, count = mode.latencies_s, len(mode.latencies_s)
        results[name] = {
            "requests": count,
            "median_ms": round(statistics.median(latencies) * 1e3, 3),
            "p99_ms": round(statistics.quantiles(latencies, n=100)[98] * 1e3, 3),
            "rps": round(count / sum(latencies)),
            "server_cpu_us": round(mode.server_cpu_s / count * 1e6, 1),
        }
    ceiling = results["none"]
    for result in results.values():
        result["added_median_us"] = round((result["median_ms"] - ceiling["median_ms"]) * 1e3, 1)
        result["added_server_cpu_us"] = round(result["server_cpu_us"] - ceiling["server_cpu_us"], 1)
    return results


Check = Callable[[int], Awaitable[Any]]  # the server's check of request i


def auth_checks(
    keys: dict[str, SigningKey], envs: dict[str, dict[str, str]], calls: int
) -> dict[str, Check]:
    """The server's own checks, built from the servers' settings, by the name of their cost."""
    from modelfleet.server.auth import ApiKeys, Authenticator
    from modelfleet.server.jwt_auth import JwtVerifier
    from modelfleet.server.ratelimit import RateLimiter
    from modelfleet.server.settings import ServerSettings

    def settings(env: dict[str, str]) -> ServerSettings:
        fields = {name.removeprefix("MODELFLEET_").lower(): value for name, value in env.items()}
        return ServerSettings.model_validate({"model_uri": str(MODELS / "model.txt"), **fields})

    api_key = Authenticator(ApiKeys(Path(envs["api-key"]["MODELFLEET_API_KEY_FILE"])))
    verifier = JwtVerifier.from_settings(settings(envs["jwt"]))
    verifier.keys.prefetch()
    jwt = Authenticator(jwt=verifier)
    limiter = RateLimiter.from_settings(settings(envs["jwt-rate-limit"]))
    assert limiter is not None
    key_header, token_claims = f"Bearer {API_KEY}".encode(), claims(TOKEN_LIFETIME_S)
    token = ("Bearer " + keys["RS256"].sign(token_claims)).encode()
    rs256 = [header.encode() for header in fresh_tokens(keys["RS256"])(calls)]
    es256 = [header.encode() for header in fresh_tokens(keys["ES256"])(calls)]
    return {
        "api_key_us": lambda _: api_key.check(key_header, None),
        "jwt_reused_us": lambda _: jwt.check(token, None),
        "jwt_rs256_fresh_us": lambda i: jwt.check(rs256[i], None),
        "jwt_es256_fresh_us": lambda i: jwt.check(es256[i], None),
        "rate_limit_per_pod_us": lambda _: limiter.admit({b"authorization": token}, token_claims),
    }


def in_process_costs(checks: dict[str, Check], calls: int) -> dict[str, float]:
    """µs of each check alone, in this process (median of `calls`), free of HTTP and the
    client; a busy machine still slows it."""

    async def median_us(check: Check) -> float:
        samples = []
        for index in range(calls):
            started = time.perf_counter()
            await check(index)
            samples.append((time.perf_counter() - started) * 1e6)
        return round(statistics.median(samples), 1)

    async def run_all() -> dict[str, float]:
        return {name: await median_us(check) for name, check in checks.items()}

    return asyncio.run(run_all())


def describe(args: argparse.Namespace) -> dict[str, str]:
    return {
        "model": "examples/models/model.txt: LightGBM 100 rounds × 3 classes, 16 features; "
        "one-row OIP v2 requests, ONNX twin backend",
        "client": f"one Python http.client connection kept alive, one request after the "
        f"other; {args.warmup} warm-up requests per mode, then {args.rounds} rounds of "
        f"{args.requests // args.rounds} per mode, the order rotating each round",
        "in_process": f"median of {args.requests} calls of each check in the bench's process: "
        "Authenticator.check (API key; RS256 token reused; a fresh RS256 or ES256 token each "
        "call) and RateLimiter.admit per pod, keyed by subject",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="measured requests per mode")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=200, help="requests per mode, not counted")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "server-auth.json")
    args = parser.parse_args()
    model_dir = example_models()
    body = (model_dir / "request.json").read_bytes()
    start = RunStart()
    keys = {algorithm: SigningKey(algorithm) for algorithm in ("RS256", "ES256")}
    modes = build_modes(keys)
    with tempfile.TemporaryDirectory(prefix="bench-server-auth-") as tmp:
        work = Path(tmp)
        (work / "api-keys").write_text(API_KEY + "\n")
        with LocalIssuer(list(keys.values())).running() as issuer:
            envs = server_envs(issuer, work / "api-keys")
            costs = in_process_costs(auth_checks(keys, envs, args.requests), args.requests)
            log(f"in process: {costs}")
            with running_servers(model_dir, work, envs) as servers:
                measure(modes, servers, body, args)
    results = summarise(modes)
    for name, result in results.items():
        log(f"{name}: {result}")
    figures = {**describe(args), "in_process": costs, "modes": results}
    seconds = write_result(args.out, "make bench-server-auth", start, figures)
    log(f"wrote {args.out} in {seconds} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
