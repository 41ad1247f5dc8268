"""The HTTP contract from outside: the OpenAPI document is valid OpenAPI 3.1, a live
aggregator keeps to it under Schemathesis's standard checks (fresh, and with a finished run),
the README's protocol table is the document's, and the project's client works against an
aggregator that answers only what the document promises."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from openapi_spec_validator import validate

from contract import openapi, wire
from contract.secagg.params import SecAggParams
from server_component.app import create_app
from server_component.coordinator import RoundCoordinator
from server_component.serve import AggregatorServer
from tests.support.federation import federate_all
from tests.support.live_aggregator import TOKEN
from tests.support.numpy_learner import NumpyLearner
from tests.support.paths import REPO_ROOT

README = REPO_ROOT / "README.md"
ST_CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"


def test_the_document_is_valid_openapi_3_1_and_is_what_the_aggregator_serves(aggregator):
    served = aggregator.http.get(f"{aggregator.url}/openapi.json").json()
    validate(served)
    assert served["openapi"] == "3.1.0"
    expected = openapi.document(rounds=2, num_clients=2, secure=False)  # the fixture's run
    assert served == json.loads(json.dumps(expected))
    validate(openapi.document())  # the generic one, as the README shows it


def test_the_readme_protocol_table_is_generated_from_the_document():
    assert openapi.markdown_table() in README.read_text(), (
        "README's protocol table drifted: paste `python -m contract.openapi --markdown`")


def _live(coordinator: RoundCoordinator) -> AggregatorServer:
    app = create_app(coordinator, token=TOKEN, max_update_bytes=1 << 20, max_long_poll_s=0.2)
    return AggregatorServer(app, "127.0.0.1", 0, threads=8).start()


def _finished_run() -> RoundCoordinator:
    """One client, one round, final model out: every long poll answers at once."""
    coordinator = RoundCoordinator(1, 1)
    coordinator.submit_init(wire.Message({"w000": np.zeros(3, np.float32)}, {"client_id": "0"}))
    coordinator.submit_update(wire.Message({"w000": np.ones(3, np.float32)},
                                           wire.UpdateMeta(0, 1, 4).to_metadata()))
    return coordinator


def _secure_run() -> RoundCoordinator:
    """Secure aggregation, round 1 open at its key stage: the /v1/secagg endpoints live."""
    coordinator = RoundCoordinator(2, 2, secure=SecAggParams(2))
    coordinator.submit_init(wire.Message({"w000": np.zeros(3, np.float32)}, {"client_id": "0"}))
    return coordinator


@pytest.mark.parametrize("state", ["fresh", "finished", "secure"])
def test_a_live_aggregator_keeps_to_its_document(state):
    """Schemathesis (its CLI, default checks: no 5xx, status codes and content types
    documented, bodies match their schemas, auth enforced, 405 with Allow for other methods,
    schema-violating input refused) finds nothing, before the first init, after the last
    round, and in a secure-aggregation round (its /v1/secagg stages). ``tests/schemathesis.toml``
    says where JSON Schema cannot state validity."""
    coordinator = {"fresh": lambda: RoundCoordinator(2, 2), "finished": _finished_run,
                   "secure": _secure_run}[state]()
    server = _live(coordinator)
    try:
        result = subprocess.run(
            [str(Path(sys.executable).with_name("st")), "--config-file", str(ST_CONFIG), "run",
             f"{server.url}/openapi.json", "-H", f"Authorization: Bearer {TOKEN}",
             "--workers", "1", "--max-examples", "50", "--seed", "20261202", "--no-color"],
            capture_output=True, text=True, timeout=600)
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failures" not in result.stdout


class DocumentedOnly:
    """WSGI middleware: JSON answers keep only the fields the document declares, and the
    init/update answers lose their bodies entirely (their status codes carry the meaning)."""

    def __init__(self, app) -> None:
        self.app, self.doc = app, openapi.document()

    def __call__(self, environ, start_response):
        path = environ["PATH_INFO"]
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        body = b"".join(self.app(environ, capture))
        content_type = dict(captured["headers"]).get("Content-Type", "")
        if content_type.startswith("application/json"):
            body = self._strip(path, json.loads(body or b"{}"))
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def _strip(self, path: str, payload: object) -> bytes:
        if path in ("/v1/init", "/v1/update"):
            return b"{}"
        if path == "/v1/status":
            declared = self.doc["components"]["schemas"]["Status"]["properties"]
            payload = {k: v for k, v in payload.items() if k in declared}
        return json.dumps(payload).encode()


def test_the_client_needs_nothing_the_document_does_not_promise():
    coordinator = RoundCoordinator(2, 2)
    app = create_app(coordinator, token=TOKEN)
    server = AggregatorServer(DocumentedOnly(app), "127.0.0.1", 0, threads=8).start()
    try:
        federate_all(server.url, [NumpyLearner(0), NumpyLearner(1)], 2, TOKEN, timeout=60)
        assert coordinator.wait_until_complete(timeout=10)
    finally:
        server.stop()
