"""A burst of hostile HTTP requests against a live aggregator, all connections open at once
(asyncio, raw sockets: a load generator must not be slowed by a client library's pool).

Every kind is something an attacker or a broken client on the cluster network could send;
none may stall a round or change what it aggregates."""

from __future__ import annotations

import asyncio
import json
import pickle
import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from contract import wire


def _update(round_: int, client_id: int, weights: dict[str, np.ndarray]) -> bytes:
    meta = wire.UpdateMeta(client_id, round_, 10, {})
    return wire.encode(weights, meta.to_metadata())


def hostile_requests(token: str, open_round: int, shapes) -> list[tuple[str, bytes]]:
    """(kind, raw HTTP request) for each kind of hostile request."""
    auth = f"Authorization: Bearer {token}\r\n"
    good = {f"w{i:03d}": np.ones(s, np.float32) for i, s in enumerate(shapes)}
    wrong_shape = {f"w{i:03d}": np.ones((3,), np.float32) for i in range(len(shapes))}
    not_finite = {k: np.full_like(v, np.nan) for k, v in good.items()}

    def post(path: str, body: bytes, headers: str = auth, length: int | None = None) -> bytes:
        head = (f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}"
                f"Content-Type: {wire.CONTENT_TYPE}\r\n"
                f"Content-Length: {len(body) if length is None else length}\r\n"
                "Connection: close\r\n\r\n")
        return head.encode() + body

    def post_json(path: str, payload: dict) -> bytes:
        body = json.dumps(payload).encode()
        return (f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body

    def get(path: str, headers: str = auth) -> bytes:
        return f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode()

    body = _update(open_round, 0, good)
    return [
        ("no token", post("/v1/update", body, headers="")),
        ("another run's token", post("/v1/update", body, headers="Authorization: Bearer x\r\n")),
        ("garbage body", post("/v1/update", b"\x00garbage" * 64)),
        ("pickle payload", post("/v1/update", pickle.dumps({"w000": [1.0, 2.0]}))),
        ("wrong shapes", post("/v1/update", _update(open_round, 1, wrong_shape))),
        ("NaN weights", post("/v1/update", _update(open_round, 2, not_finite))),
        ("a past round", post("/v1/update", _update(open_round - 1, 3, good))),
        ("unknown client id", post("/v1/update", _update(open_round, 10_000, good))),
        ("declared 10 GiB", post("/v1/update", b"", length=10 << 30)),
        ("body cut short", post("/v1/update", body[:100], length=len(body))),
        ("garbage init", post("/v1/init", b"not safetensors")),
        ("init with 1 MB of settings", post("/v1/init", wire.encode(good, {
            wire.META_CLIENT_ID: "0", wire.META_SETTINGS: "{" + " " * (1 << 20) + "}"}))),
        ("done with forged counts", post_json("/v1/done", {
            "client_id": 0, "num_examples": 5, "counts": {"confusion_matrix": [[2**60, 0],
                                                                               [0, 1]]}})),
        ("done with a thousand metrics", post_json("/v1/done", {
            "client_id": 0, "metrics": {f"m{i}": 1.0 for i in range(1000)}})),
        ("status probe", get("/v1/status")),
        ("model of a future round", get(f"/v1/model?round={open_round + 50}&wait=0")),
        ("unknown path", get("/v1/../../etc/passwd")),
    ]


@dataclass
class BurstResult:
    answers: Counter = field(default_factory=Counter)  # (kind, status or "closed")
    seconds: float = 0.0
    attempted: int = 0  # connection attempts that finished (accepted or not)
    all_connected: threading.Event = field(default_factory=threading.Event)
    count: int = 0

    def attempt_done(self) -> None:
        self.attempted += 1
        if self.attempted == self.count:
            self.all_connected.set()

    def statuses(self) -> Counter:
        return Counter(status for (_, status) in self.answers.elements())


async def _one(port: int, kind: str, raw: bytes, result: BurstResult, timeout: float) -> None:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, asyncio.TimeoutError):
        result.answers[(kind, "refused")] += 1
        result.attempt_done()
        return
    result.attempt_done()
    try:
        writer.write(raw)
        if kind == "body cut short":
            await writer.drain()
            writer.write_eof()  # the sender stops mid-body and half-closes
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        status = int(status_line.split()[1]) if status_line else "closed"
    except (OSError, asyncio.TimeoutError, IndexError, ValueError):
        status = "closed"
    finally:
        writer.close()
    result.answers[(kind, status)] += 1


async def _burst(port: int, requests: list[tuple[str, bytes]], count: int,
                 timeout: float, result: BurstResult) -> BurstResult:
    result.count = count
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(
        _one(port, *requests[i % len(requests)], result, timeout) for i in range(count)))
    result.seconds = loop.time() - started
    return result


def burst(port: int, requests: list[tuple[str, bytes]], count: int = 1000,
          timeout: float = 60.0, result: BurstResult | None = None) -> BurstResult:
    """Send ``count`` requests (cycling through the kinds), all connections opened at once;
    ``result.all_connected`` is set once every connection attempt has finished."""
    return asyncio.run(_burst(port, requests, count, timeout, result or BurstResult()))
