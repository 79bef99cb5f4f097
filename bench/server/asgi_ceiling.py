"""The ceiling: a bare ASGI app that answers every request with a fixed small JSON body,
under the same uvicorn + httptools + uvloop as modelfleet (one process)."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

BODY = (
    b'{"model_name":"model","outputs":[{"name":"label","datatype":"INT64","shape":[1],"data":[1]}]}'
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
        lifespan="off", access_log=False, log_level="warning",
    )  # fmt: skip
