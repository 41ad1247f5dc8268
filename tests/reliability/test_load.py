"""Load: 50 clients for 10 rounds against the real aggregator process, with two bursts of
1,000 hostile requests each, fired while rounds 4 and 7 are open and the clients post into
them. The run completes with every client in every round, the final weights are
byte-identical to an undisturbed run, every hostile request is answered with a 4xx while
the run is live (never a 5xx or a success), and the second burst takes no more memory than
the first left behind: nothing a hostile request leaves is kept."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import psutil
import pytest

from server_component.outputs import FINAL_WEIGHTS
from tests.reliability.test_resilience import start_clients
from tests.support.aggregator_process import TOKEN, AggregatorProcess
from tests.support.hostile_load import BurstResult, burst, hostile_requests
from tests.support.live_aggregator import free_port
from tests.support.numpy_learner import NumpyLearner

CLIENTS, ROUNDS, ATTACKED_ROUNDS = 50, 10, (4, 7)
SHAPES = ((64, 32), (32,))
MiB = 1 << 20
LEAK_MIB = 16  # what a second identical burst may add on top of what the first left
BURST_MIB = 256  # a burst's own buffers: far below 1,000 bodies of up to 1 MB in memory


@dataclass
class AttackedRun:
    bursts: list[BurstResult] = field(default_factory=list)
    rss: dict[str, float] = field(default_factory=dict)  # MiB at quiet points of the run

    def statuses(self) -> Counter:
        return sum((b.statuses() for b in self.bursts), Counter())

    def answers(self) -> Counter:
        return sum((b.answers for b in self.bursts), Counter())


def federate(tmp_path, attack: bool):
    port, out = free_port(), tmp_path / "out"
    server = AggregatorProcess(port, out, "--num-clients", str(CLIENTS), "--rounds",
                               str(ROUNDS))
    # Clients wait before fitting an attacked round until the burst has connected, and
    # before the next round until every hostile request was answered (so all are, live).
    gates = {r: threading.Event() for a in ATTACKED_ROUNDS for r in (a, a + 1)}
    for gate in gates.values():
        if not attack:
            gate.set()

    def wait_at_gate(cid, round_):
        if round_ in gates:
            gates[round_].wait(120)

    learners = [NumpyLearner(cid, shapes=SHAPES, before_fit=wait_at_gate)
                for cid in range(CLIENTS)]
    results, errors = {}, {}
    process = psutil.Process(server.proc.pid)
    threads = start_clients(port, CLIENTS, ROUNDS, learners, results, errors)
    run = AttackedRun()
    for round_ in ATTACKED_ROUNDS if attack else ():
        assert server.wait_for(f"round={round_ - 1}/{ROUNDS} ", timeout=180), server.output[-3000:]
        run.rss.setdefault("before", process.memory_info().rss / MiB)
        run.bursts.append(_attack_while_clients_post(port, round_, gates[round_]))
        run.rss[f"after burst {len(run.bursts)}"] = process.memory_info().rss / MiB
        gates[round_ + 1].set()
    assert server.wait_for(f"round={ROUNDS}/{ROUNDS} ", timeout=180), server.output[-3000:]
    run.rss["end"] = process.memory_info().rss / MiB
    for t in threads:
        t.join(timeout=120)
    assert server.wait(timeout=60) == 0, server.output[-3000:]
    return errors, out, run, server


def _attack_while_clients_post(port: int, round_: int, clients_go: threading.Event
                               ) -> BurstResult:
    """The burst starts while ``round_`` is open; the clients train and post into it while
    the burst is still under way. They are released once every hostile connection is open
    (on a loaded machine a fixed delay let the round close before the burst had
    connected); this returns when every hostile request has its answer."""
    result = BurstResult()

    def release() -> None:
        result.all_connected.wait(60)
        clients_go.set()

    releaser = threading.Thread(target=release, daemon=True)
    releaser.start()
    burst(port, hostile_requests(TOKEN, round_, SHAPES), count=1000, result=result)
    releaser.join()
    return result


@pytest.mark.slow
@pytest.mark.reliability(
    scenario=f"load: {CLIENTS} clients x {ROUNDS} rounds, two bursts of 1,000 concurrent "
             f"hostile requests (17 kinds) during rounds {ATTACKED_ROUNDS[0]} and "
             f"{ATTACKED_ROUNDS[1]}",
    expected="completes with every client each round; final weights identical to an "
             "undisturbed run; every hostile request answered 4xx while the run is live "
             "(a body cut short: closed), never 2xx/5xx; the second burst adds no memory")
def test_fifty_clients_and_a_hostile_burst(tmp_path, observe):
    errors, out, _, _ = federate(tmp_path / "calm", attack=False)
    assert not errors, errors
    expected = (out / FINAL_WEIGHTS).read_bytes()

    errors, out, run, server = federate(tmp_path / "attacked", attack=True)
    assert not errors, errors
    assert (out / FINAL_WEIGHTS).read_bytes() == expected
    assert all(f"round={r}/{ROUNDS} clients={CLIENTS} " in server.output
               for r in range(1, ROUNDS + 1))
    statuses, answers = run.statuses(), run.answers()
    assert sum(statuses.values()) == 2000
    assert "refused" not in statuses  # every connection was taken (the backlog held them)
    accepted = {s for s in statuses if isinstance(s, int) and (s < 400 or s >= 500)}
    # The status probe is the one kind that may succeed: it reads, it changes nothing.
    assert accepted <= {200}, answers
    assert all(kind == "status probe" for (kind, s) in answers if s == 200)
    assert all(kind == "body cut short" for (kind, s) in answers if s == "closed"), answers
    # Nothing a hostile client sent reached the outputs: done came from the 50 clients only.
    assert f"done={CLIENTS}/{CLIENTS}" in server.output
    rss = {k: round(v, 1) for k, v in run.rss.items()}
    assert rss["after burst 1"] - rss["before"] < BURST_MIB, rss
    assert max(rss["after burst 2"], rss["end"]) - rss["after burst 1"] < LEAK_MIB, rss
    observe(f"answers {dict(sorted(statuses.items(), key=str))} in "
            f"{' + '.join(f'{b.seconds:.1f}' for b in run.bursts)} s; {ROUNDS}/{ROUNDS} rounds "
            f"with {CLIENTS} clients, final weights identical; RSS MiB before "
            f"{rss['before']:.0f}, after each burst {rss['after burst 1']:.0f} and "
            f"{rss['after burst 2']:.0f}, at the end {rss['end']:.0f}")
