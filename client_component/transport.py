"""HTTP transport to the aggregator: one requests.Session, timeouts, backoff, long polls.

It relies only on what the contract documents (``contract.openapi``): status codes first, then
the JSON fields of ``contract.messages``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import numpy as np
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from contract import wire
from contract.messages import (
    INIT_ADOPTED,
    MODEL_NOT_YET,
    UPDATE_ACCEPTED,
    DoneReport,
    ErrorReply,
    Status,
)
from contract.safetensors_io import byte_buffer

log = logging.getLogger(__name__)


class AggregatorError(RuntimeError):
    """The aggregator refused a call; carries its status, error code and detail."""

    def __init__(self, status: int, code: str, detail: str, call: str) -> None:
        super().__init__(f"{call}: aggregator answered {status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


class AggregatorUnreachable(RuntimeError):
    """The aggregator did not come up within the allowed time."""


class AggregatorClient:
    """Speaks protocol v1 to one aggregator."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 60.0,
                 long_poll_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.long_poll_s = long_poll_s
        self.session = requests.Session()
        # Connection failures and gateway errors are retried here; a connection lost
        # mid-request is not (read=0): the caller resynchronises with /v1/status instead,
        # which also recovers an update a restarted aggregator never saw.
        retry = Retry(total=5, connect=5, read=0, status=3, backoff_factor=0.5,
                      status_forcelist=(502, 503, 504), allowed_methods=None,
                      raise_on_status=False)
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        if token:
            self.session.headers["Authorization"] = f"{wire.TOKEN_SCHEME} {token}"

    def wait_ready(self, max_wait_s: float = 600.0) -> None:
        """Back off exponentially (0.5 s doubling to 10 s) until /healthz answers."""
        deadline, delay = time.monotonic() + max_wait_s, 0.5
        while True:
            try:
                # A bare probe: the session's own retries would stretch each attempt.
                if requests.get(f"{self.base_url}/healthz", timeout=5).ok:
                    return
            except requests.RequestException as exc:
                log.debug("aggregator not up yet: %s", exc)
            if time.monotonic() + delay > deadline:
                raise AggregatorUnreachable(
                    f"aggregator at {self.base_url} not reachable within {max_wait_s:.0f} s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def status(self) -> Status:
        """The run's position (``GET /v1/status``), to resynchronise with the aggregator."""
        response = self.session.get(f"{self.base_url}/v1/status", timeout=self.timeout)
        if not response.ok:
            raise _error(response, "GET status")
        return Status.from_json(response.json())

    def post_init(self, weights: list[np.ndarray], meta: wire.InitMeta | int) -> bool:
        """Offer ``weights`` as model version 0, with what the client says about itself (or
        just its id); True if adopted, False if another client's init came first."""
        meta = meta if isinstance(meta, wire.InitMeta) else wire.InitMeta(meta)
        body = wire.EncodedParts(wire.tensors_from_list(weights), meta.to_metadata())
        return self._post("/v1/init", body).status_code == INIT_ADOPTED

    def fetch_model(self, version: int, max_wait_s: float = 3600.0,
                    on_wait: Callable[[], None] | None = None) -> list[np.ndarray]:
        """Long-poll until model ``version`` exists; its weights in order (without any
        control variates served beside them)."""
        model, _ = wire.split_control(self.fetch_tensors(version, max_wait_s, on_wait))
        return wire.tensors_to_list(model)

    def fetch_tensors(self, version: int, max_wait_s: float = 3600.0,
                      on_wait: Callable[[], None] | None = None) -> dict[str, np.ndarray]:
        """Long-poll until model ``version`` exists; every tensor served, by name. ``on_wait``
        runs after each poll that came back empty (once per long-poll period, not a spin)."""
        deadline = time.monotonic() + max_wait_s
        while time.monotonic() < deadline:
            response = self.session.get(
                f"{self.base_url}/v1/model",
                params={"round": version, "wait": self.long_poll_s},
                timeout=self.long_poll_s + self.timeout, stream=True,
            )
            if response.status_code == 200:
                return wire.decode(read_body(response)).tensors
            with response:  # back to the pool: a streamed response holds its connection
                if response.status_code != MODEL_NOT_YET:
                    raise _error(response, f"GET model version {version}")
            if on_wait is not None:
                on_wait()
        raise AggregatorUnreachable(f"model version {version} not published in {max_wait_s} s")

    def post_update(self, weights: list[np.ndarray], meta: wire.UpdateMeta,
                    extra: Mapping[str, np.ndarray] | None = None) -> str:
        """Send an update: the weights in order, plus ``extra`` named tensors (control
        variates); 'accepted' or 'duplicate'."""
        tensors = {**wire.tensors_from_list(weights), **(extra or {})}
        body = wire.EncodedParts(tensors, meta.to_metadata())
        accepted = self._post("/v1/update", body).status_code == UPDATE_ACCEPTED
        return "accepted" if accepted else "duplicate"

    def post_done(self, client_id: int, metrics: Mapping[str, float], num_examples: int,
                  counts: Mapping | None = None) -> None:
        """Say this client is done: its evaluation of the final model on ``num_examples``
        test examples, with the confusion-matrix and ROC ``counts`` if it has them."""
        report = DoneReport(client_id, dict(metrics), max(num_examples, 1),
                            dict(counts) if counts else None)
        response = self.session.post(f"{self.base_url}/v1/done", json=report.to_json(),
                                     timeout=self.timeout)
        if not response.ok:
            raise _error(response, "POST done")

    def post_json(self, path: str, body: Mapping) -> requests.Response:
        """POST a JSON body; the response if the aggregator accepted it (AggregatorError
        otherwise)."""
        response = self.session.post(f"{self.base_url}{path}", json=dict(body),
                                     timeout=self.timeout)
        if not response.ok:
            raise _error(response, f"POST {path}")
        return response

    def post_body(self, path: str, body: bytes | wire.EncodedParts) -> requests.Response:
        """POST a binary (safetensors) body; the response if accepted."""
        return self._post(path, body)

    def long_poll(self, path: str, params: Mapping[str, object], max_wait_s: float = 3600.0
                  ) -> requests.Response:
        """GET ``path`` until it answers 200 (it answers 204 while what it waits for is not
        there yet, after holding the request up to the long-poll period)."""
        deadline = time.monotonic() + max_wait_s
        while time.monotonic() < deadline:
            response = self.session.get(f"{self.base_url}{path}",
                                        params={**params, "wait": self.long_poll_s},
                                        timeout=self.long_poll_s + self.timeout)
            if response.status_code == 200:
                return response
            if response.status_code != MODEL_NOT_YET:
                raise _error(response, f"GET {path}")
        raise AggregatorUnreachable(f"GET {path} got no answer in {max_wait_s} s")

    def _post(self, path: str, body: bytes | wire.EncodedParts) -> requests.Response:
        response = self.session.post(
            f"{self.base_url}{path}", data=body, timeout=self.timeout,
            headers={"Content-Type": wire.CONTENT_TYPE},
        )
        if not response.ok:
            raise _error(response, f"POST {path}")
        return response


def read_body(response: requests.Response) -> memoryview:
    """A streamed response's body read straight into one buffer of its Content-Length:
    requests' ``.content`` gathers 10 KiB chunks and joins them, two copies of a model."""
    with response:
        length = int(response.headers.get("Content-Length", -1))
        if length < 0:
            return memoryview(response.content)
        view, filled = byte_buffer(length), 0
        try:
            while filled < length:
                count = response.raw.readinto(view[filled:])
                if not count:
                    break
                filled += count
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise requests.exceptions.ChunkedEncodingError(exc) from exc
        if filled < length:
            raise requests.exceptions.ChunkedEncodingError(
                f"model body ended after {filled} of {length} bytes")
        return view


def _error(response: requests.Response, call: str) -> AggregatorError:
    try:
        reply = ErrorReply.from_json(response.json(), response.text[:200])
    except ValueError:
        reply = ErrorReply("?", response.text[:200])
    return AggregatorError(response.status_code, reply.error, reply.detail, call)
