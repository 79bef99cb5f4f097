"""A small OIDC-style issuer for the JWT tests: signing keys the test generates (cryptography),
tokens signed by them (PyJWT), and a JWKS endpoint on loopback that counts its fetches and
whose key set the test swaps to rotate keys."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://issuer.test"
AUDIENCE = "modelfleet-fraud"


@dataclass
class SigningKey:
    """One key pair of the issuer; `jwk` is the public half as published."""

    algorithm: str = "RS256"
    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    private: Any = None
    jwk: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.private is None:
            self.private = (
                ec.generate_private_key(ec.SECP256R1())
                if self.algorithm.startswith("ES")
                else rsa.generate_private_key(public_exponent=65537, key_size=2048)
            )
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        public = json.loads(algorithm.to_jwk(self.private.public_key()))
        self.jwk = {**public, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        """A token with these claims, its header naming this key (override with `header`)."""
        headers = {"kid": self.kid, **header}
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers=headers)


def claims(lifetime_s: float = 300, **extra: Any) -> dict[str, Any]:
    """Claims the test issuer puts in a token for AUDIENCE, valid from now for `lifetime_s`."""
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "team-payments",
        "iat": now,
        "nbf": now,
        "exp": now + int(lifetime_s),
        **extra,
    }


class LocalIssuer:
    """The JWKS endpoint: GET /jwks answers the current key set; `fetches` counts the GETs."""

    def __init__(self, keys: Sequence[SigningKey]) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.available = True
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.jwks_uri = f"http://127.0.0.1:{self._server.server_address[1]}/jwks"

    def publish(self, keys: Sequence[SigningKey]) -> None:
        with self._lock:
            self.keys = list(keys)

    def _document(self) -> bytes | None:
        with self._lock:
            self.fetches += 1
            if not self.available:
                return None
            return json.dumps({"keys": [key.jwk for key in self.keys]}).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = issuer._document() if self.path == "/jwks" else None
                self.send_response(200 if body is not None else 503)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[LocalIssuer]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()
