"""Lock-step rounds across real client processes, timed from the parent.

Every client process and the parent meet at a barrier before and after each round; a round's
time is the parent's wall time between the two meetings, so it covers every client encoding
its update, sending it, the server aggregating, and every client holding the decoded new
global model. The first ``warmup`` rounds are not counted.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

BARRIER_TIMEOUT_S = 900.0


@dataclass
class DesignResult:
    """One design at one (clients, params) point."""

    design: str
    round_times: list[float] = field(default_factory=list)
    wire_bytes_per_round: int = 0
    server_peak_mib: float = float("nan")
    skipped: str | None = None  # why it was not measured

    @property
    def median(self) -> float:
        return statistics.median(self.round_times)


@dataclass(frozen=True)
class RoundPlan:
    num_clients: int
    params: int
    rounds: int
    warmup: int = 1

    @property
    def total_rounds(self) -> int:
        return self.rounds + self.warmup


ClientMain = Callable[..., None]


def run_lockstep(plan: RoundPlan, client_main: ClientMain, *client_args: object) -> tuple[
        list[float], int]:
    """Start ``plan.num_clients`` processes of ``client_main(cid, plan, barrier, queue,
    *client_args)``; the timed round times and the wire bytes of one round."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(plan.num_clients + 1, timeout=BARRIER_TIMEOUT_S)
    queue = ctx.Queue()
    procs = [ctx.Process(target=client_main, args=(cid, plan, barrier, queue, *client_args),
                         daemon=True) for cid in range(plan.num_clients)]
    for proc in procs:
        proc.start()
    try:
        barrier.wait()  # every client is set up (connected, update built)
        times = []
        for _ in range(plan.total_rounds):
            barrier.wait()
            start = time.perf_counter()
            barrier.wait()
            times.append(time.perf_counter() - start)
        wire_bytes = sum(queue.get(timeout=BARRIER_TIMEOUT_S) for _ in procs)
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
    failed = [p.exitcode for p in procs if p.exitcode]
    if failed:
        raise RuntimeError(f"client processes exited with {failed}")
    return times[plan.warmup:], wire_bytes // plan.total_rounds


def client_loop(barrier, queue, rounds: int, one_round: Callable[[int], int]) -> None:
    """The client side of ``run_lockstep``: ``one_round(r)`` returns the bytes it moved."""
    barrier.wait()
    moved = 0
    for round_ in range(1, rounds + 1):
        barrier.wait()
        moved += one_round(round_)
        barrier.wait()
    queue.put(moved)
