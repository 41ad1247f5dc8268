"""Flower's gRPC transport (flwr's deprecated-but-shipped ``start_server``/``start_client``
round trip, grpc-bidi) moving the same updates through its own FedAvg: the framework users
would otherwise pick. Measured only where flwr and its gRPC stack import."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np

from bench.harness import REPO_ROOT, model_weights, peak_rss_mib
from bench.transport.rounds import DesignResult, RoundPlan

GRPC_MAX_MESSAGE = 1 << 30


def flower_python() -> str:
    """The interpreter with Flower and its requirements: ``make flower-venv`` builds
    .venv-flower apart from the project, whose pins (protobuf, certifi) Flower's contradict."""
    configured = os.environ.get("FL_FLOWER_PYTHON")
    if configured:
        return configured
    local = REPO_ROOT / ".venv-flower" / "bin" / "python"
    return str(local) if local.exists() else sys.executable


def available() -> str | None:
    """None when Flower's legacy gRPC path imports in ``flower_python()``, else why not."""
    probe = subprocess.run(
        [flower_python(), "-c", "from flwr.server import start_server; "
                                "from flwr.client import start_client"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    if probe.returncode:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"flwr not importable with {flower_python()} ({last}); run make flower-venv"
    return None


def serve(port: int, plan: RoundPlan) -> None:
    """Server process: run the rounds, print the time between consecutive rounds' starts
    (broadcast + fits + upload + aggregation) and the peak RSS as one JSON line."""
    from flwr.server import ServerConfig, start_server
    from flwr.server.strategy import FedAvg

    starts: list[float] = []

    class TimedFedAvg(FedAvg):
        def configure_fit(self, server_round, parameters, client_manager):
            starts.append(time.perf_counter())
            return super().configure_fit(server_round, parameters, client_manager)

    strategy = TimedFedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=plan.num_clients,
        min_evaluate_clients=0, min_available_clients=plan.num_clients,
        initial_parameters=_parameters(model_weights(plan.params)))
    # One trailing round so the last timed round also includes its model broadcast.
    start_server(server_address=f"127.0.0.1:{port}", strategy=strategy,
                 config=ServerConfig(num_rounds=plan.total_rounds + 1),
                 grpc_max_message_length=GRPC_MAX_MESSAGE)
    times = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    print(json.dumps({"times": times, "peak_mib": peak_rss_mib()}), flush=True)


def _parameters(weights):
    from flwr.common import ndarrays_to_parameters
    return ndarrays_to_parameters(weights)


def client(port: int, cid: int, params: int) -> None:
    from flwr.client import NumPyClient, start_client

    update = model_weights(params, seed=cid + 1)

    class UpdateOnly(NumPyClient):
        def fit(self, parameters, config):
            return update, 10 + cid, {}

    start_client(server_address=f"127.0.0.1:{port}", client=UpdateOnly().to_client(),
                 grpc_max_message_length=GRPC_MAX_MESSAGE, insecure=True)


def measure(plan: RoundPlan) -> DesignResult:
    name = "Flower 1.42 gRPC"
    why_not = available()
    if why_not:
        return DesignResult(name, skipped=why_not)
    port = _free_port()
    python = [flower_python(), "-c"]
    server = subprocess.Popen(
        [*python, "from bench.transport.flower import serve; from bench.transport.rounds "
                  f"import RoundPlan; serve({port}, RoundPlan({plan.num_clients}, "
                  f"{plan.params}, {plan.rounds}, {plan.warmup}))"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    _wait_listening(port)
    clients = [subprocess.Popen(
        [*python, f"from bench.transport.flower import client; client({port}, {cid}, "
                  f"{plan.params})"], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL) for cid in range(plan.num_clients)]
    try:
        out, _ = server.communicate(timeout=1800)
        report = json.loads(out.strip().splitlines()[-1])
    finally:
        for proc in [server, *clients]:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    times = report["times"][plan.warmup:plan.warmup + plan.rounds]
    payload = 2 * plan.num_clients * plan.params * np.dtype(np.float32).itemsize
    return DesignResult(name, times, payload, report["peak_mib"])


def _wait_listening(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"Flower server did not listen on port {port} within {timeout:.0f} s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
