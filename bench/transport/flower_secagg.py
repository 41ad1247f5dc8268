"""Flower 1.42's secure aggregation (SecAgg+) through its own runtime: a ServerApp running
``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))`` on a ``LegacyContext`` with FedAvg,
and a ClientApp with ``mods=[secaggplus_mod]`` whose fit returns a fixed P-parameter float32
update (no training), run by ``flwr.simulation.run_simulation``.

Flower 1.42's Simulation Runtime has only a Ray backend (``vce.start_vce`` builds a
``RayBackend`` whatever ``backend_name`` says), so this needs ``ray`` in .venv-flower
(bench/flower-secagg-requirements.txt). The ServerApp runs in a thread of one subprocess
(``flower_python()``) next to the runtime's in-memory LinkState; the ClientApps run in Ray
actor processes, one per CPU, each SuperNode's message queued to the next free actor.

A round's time is one SecAgg+ fit round as timed inside the ServerApp: FedAvg's
configure_fit, then the protocol's four message stages (setup and public keys, key shares,
the model broadcast with fit and masked upload, unmasking), each a ``send_and_receive``
through the LinkState to the actors and back (polled every 0.1 s by Flower), then the
unmasking, dequantisation and FedAvg's aggregate_fit on the server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from bench.harness import REPO_ROOT, model_weights, peak_rss_mib
from bench.transport.flower import flower_python
from bench.transport.rounds import DesignResult, RoundPlan

NAME = "Flower 1.42 SecAgg+"
RESULT_MARK = "flower_secagg_result "
TIMEOUT_S = 1800
HALTED = "halted"
STAGES = ("setup_stage", "share_keys_stage", "collect_masked_vectors_stage", "unmask_stage")
PROBE = ("import ray; from flwr.simulation import run_simulation; "
         "from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow; "
         "from flwr.client.mod import secaggplus_mod")
# Flower phones home (telemetry) and Ray reports usage unless told not to.
QUIET_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def available() -> str | None:
    """Whether Flower's SecAgg+ simulation path can run here.

    Returns:
        None when flwr's SecAgg+ workflow, its client mod and Ray import in
        ``flower_python()``, else one line saying why not.
    """
    probe = subprocess.run([flower_python(), "-c", PROBE], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=120)
    if probe.returncode:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return (f"Flower SecAgg+ not importable with {flower_python()} ({last}); run make "
                "flower-venv and pip install -r bench/flower-secagg-requirements.txt")
    return None


def measure(plan: RoundPlan) -> DesignResult:
    """Time Flower's SecAgg+ rounds for ``plan`` in a subprocess running the simulation.

    Args:
        plan: clients N, parameters P, timed rounds and warm-up rounds.

    Returns:
        The timed rounds (warm-up dropped), the estimated payload bytes of one round and
        the peak RSS of the process running the ServerApp; skipped when Flower or Ray
        does not import.
    """
    why_not = available()
    if why_not:
        return DesignResult(NAME, skipped=why_not)
    return design_result(plan, run_rounds(plan))


def design_result(plan: RoundPlan, report: dict[str, Any]) -> DesignResult:
    """The DesignResult of a ``run_rounds`` report: its warm-up rounds dropped.

    Args:
        plan: the plan the report was run with.
        report: what ``run_rounds`` returned.

    Returns:
        The timed rounds, the estimated payload bytes of one round and the ServerApp
        process's peak RSS.
    """
    times = report["times"][plan.warmup:plan.warmup + plan.rounds]
    return DesignResult(NAME, times, payload_bytes(plan, report), report["peak_mib"])


def payload_bytes(plan: RoundPlan, report: dict[str, Any]) -> int:
    """Estimated bytes one round moves (there is no wire: the simulation passes messages
    in memory and through Ray's object store). Per client: the global model broadcast as
    serialised, float32 in round 1 and float64 after it (Flower dequantises the aggregate
    to float64), plus the masked upload, P + 1 int64 values. Keys, shares and ciphertexts
    (O(N) small byte strings per client) are left out. The other designs' estimate,
    P * 4 * N * 2, would undercount this by about a factor of two."""
    timed = report["broadcast_bytes"][plan.warmup:plan.warmup + plan.rounds]
    broadcast = sum(timed) // max(1, len(timed))
    return plan.num_clients * (broadcast + 8 * (plan.params + 1))


def run_rounds(plan: RoundPlan) -> dict[str, Any]:
    """Run ``simulate(plan)`` in ``flower_python()`` and return its report.

    Args:
        plan: clients N, parameters P, timed rounds and warm-up rounds.

    Returns:
        ``times`` (every fit round, warm-up included), ``stages`` (per round, the
        seconds of each SecAgg+ stage), ``broadcast_bytes`` (the global model's
        serialised size at each round's start) and ``peak_mib``.

    Raises:
        RuntimeError: the simulation failed, printed no report, or SecAgg+ halted in a
            round (too few clients answered a stage).
    """
    code = ("from bench.transport.flower_secagg import simulate; from bench.transport.rounds "
            f"import RoundPlan; simulate(RoundPlan({plan.num_clients}, {plan.params}, "
            f"{plan.rounds}, {plan.warmup}))")
    proc = subprocess.Popen([flower_python(), "-c", code], cwd=REPO_ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        _end_group(proc)
    lines = [line for line in out.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode or not lines:
        tail = "\n".join(err.strip().splitlines()[-20:])
        raise RuntimeError(f"Flower SecAgg+ simulation exited {proc.returncode}:\n{tail}")
    report = json.loads(lines[-1][len(RESULT_MARK):])
    halted = [i + 1 for i, stages in enumerate(report["stages"]) if HALTED in stages]
    if halted or len(report["times"]) != plan.total_rounds:
        raise RuntimeError(f"Flower SecAgg+ did not aggregate rounds {halted} of "
                           f"{len(report['times'])}/{plan.total_rounds}")
    return report


def _env() -> dict[str, str]:
    # Ray's workers import the ClientApp's functions from this repository.
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, **QUIET_ENV, "PYTHONPATH": path}


def _end_group(proc: subprocess.Popen) -> None:
    """Kill what is left of the subprocess's session (Ray's raylet, GCS and workers, when
    it did not shut them down itself)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def simulate(plan: RoundPlan) -> None:
    """Subprocess entry: run ``plan.total_rounds`` SecAgg+ rounds in Flower's simulation
    and print the report (see ``run_rounds``) as one marked JSON line.

    Args:
        plan: clients N, parameters P, timed rounds and warm-up rounds.
    """
    from flwr.simulation import run_simulation

    report: dict[str, Any] = {"times": [], "stages": [], "broadcast_bytes": []}
    run_simulation(server_app=server_app(plan, report), client_app=client_app(plan.params),
                   num_supernodes=plan.num_clients, backend_name="ray",
                   backend_config=backend_config())
    report["peak_mib"] = peak_rss_mib()
    print(RESULT_MARK + json.dumps(report), flush=True)


def backend_config() -> dict[str, dict[str, int | float | bool]]:
    """Ray with one ClientApp actor per CPU (FL_FLOWER_RAY_CPUS overrides the count), no
    dashboard, and its workers' output kept out of the driver's."""
    cpus = int(os.environ.get("FL_FLOWER_RAY_CPUS") or os.cpu_count() or 1)
    return {"init_args": {"num_cpus": cpus, "log_to_driver": False},
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0}}


def server_app(plan: RoundPlan, report: dict[str, Any]) -> Any:
    """Flower's SecAgg+ example ServerApp: FedAvg over every client, in a LegacyContext,
    with SecAgg+ as the fit workflow; every fit round is timed into ``report``.

    Args:
        plan: clients N, parameters P, timed rounds and warm-up rounds.
        report: where the rounds' times, stage times and broadcast sizes are appended.

    Returns:
        The ``flwr.serverapp.ServerApp``.
    """
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
    from flwr.serverapp import ServerApp

    app = ServerApp()
    n = plan.num_clients

    @app.main()
    def main(grid, context) -> None:
        strategy = FedAvg(
            fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n,
            min_evaluate_clients=0, min_available_clients=n,
            initial_parameters=ndarrays_to_parameters(model_weights(plan.params)))
        context = LegacyContext(context=context, strategy=strategy,
                                config=ServerConfig(num_rounds=plan.total_rounds))
        secagg = SecAggPlusWorkflow(num_shares=num_shares(n), reconstruction_threshold=n // 2 + 1)
        DefaultWorkflow(fit_workflow=timed_fit(secagg, report))(grid, context)

    return app


def num_shares(num_clients: int) -> int | float:
    """Every client shares with all the others. Flower refuses the integer form for
    N <= 2; its float form, a fraction of the sampled clients, then says the same."""
    return num_clients if num_clients > 2 else 1.0


def timed_fit(workflow: Any, report: dict[str, Any]) -> Callable[[Any, Any], None]:
    """Wrap a SecAgg+ workflow so that each call (one fit round) and each of its stages
    is timed, and the global model's size at the round's start recorded, into ``report``."""
    stages: dict[str, float] = {}
    for stage in STAGES:
        setattr(workflow, stage, _timed_stage(getattr(workflow, stage), stage, stages))

    def fit_round(grid: Any, context: Any) -> None:
        report["broadcast_bytes"].append(_model_bytes(context))
        stages.clear()
        start = time.perf_counter()
        workflow(grid, context)
        report["times"].append(time.perf_counter() - start)
        report["stages"].append(dict(stages))

    return fit_round


def _timed_stage(step: Callable[..., bool], name: str, into: dict[str, float]
                 ) -> Callable[..., bool]:
    def timed(*args: Any) -> bool:
        start = time.perf_counter()
        try:
            done = step(*args)
        finally:
            into[name] = time.perf_counter() - start
        if not done:  # the workflow logs "Secure aggregation halted" and goes on
            into[HALTED] = 1.0
        return done

    return timed


def _model_bytes(context: Any) -> int:
    from flwr.server.workflow.constant import MAIN_PARAMS_RECORD

    record = context.state.array_records[MAIN_PARAMS_RECORD]
    return sum(len(array.data) for array in record.values())


def client_app(params: int) -> Any:
    """The ClientApp: SecAgg+'s client mod around a NumPyClient whose fit returns client
    ``cid``'s fixed update (``model_weights(params, cid + 1)``) with 10 + cid examples.

    Args:
        params: parameters P of the update.

    Returns:
        The ``flwr.clientapp.ClientApp``.
    """
    from flwr.client.mod import secaggplus_mod
    from flwr.clientapp import ClientApp

    def client_fn(context: Any) -> Any:
        cid = int(context.node_config["partition-id"])
        return _update_client(cid, params).to_client()

    return ClientApp(client_fn=client_fn, mods=[secaggplus_mod])


def _update_client(cid: int, params: int) -> Any:
    from flwr.client import NumPyClient

    class UpdateOnly(NumPyClient):
        def fit(self, parameters, config):
            return _update(cid, params), 10 + cid, {}

    return UpdateOnly()


@lru_cache(maxsize=64)
def _update(cid: int, params: int) -> list:
    # Built once per client in each Ray actor, then reused: no training.
    return model_weights(params, seed=cid + 1)
