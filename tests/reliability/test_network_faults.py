"""A slow, throttled network that also drops connections between clients and the aggregator
(a loopback fault proxy, tests/fault_proxy.py): every round still closes with every client
and the final weights equal those of a run on a clean network.

Where the kernel has the netem qdisc, ``tc netem`` in a network namespace would do the same;
this machine's kernel has none ("Specified qdisc kind is unknown"), so the proxy stands in:
it is portable and its faults are seeded, so a failure replays."""

import pytest

from server_component.outputs import FINAL_WEIGHTS
from tests.reliability.test_resilience import start_clients
from tests.support.aggregator_process import AggregatorProcess
from tests.support.fault_proxy import FaultProxy
from tests.support.live_aggregator import free_port
from tests.support.numpy_learner import NumpyLearner

ROUNDS, CLIENTS = 5, 3


def federate_through(tmp_path, proxy: FaultProxy | None = None):
    port, out = free_port(), tmp_path / "out"
    server = AggregatorProcess(port, out, "--num-clients", str(CLIENTS), "--rounds",
                               str(ROUNDS))
    # 64 KiB bodies, so that cuts land inside updates and models, not only in headers.
    learners = [NumpyLearner(cid, shapes=((128, 128), (128,))) for cid in range(CLIENTS)]
    results, errors = {}, {}
    if proxy is not None:
        proxy.target_port = port
    threads = start_clients(proxy.port if proxy else port, CLIENTS, ROUNDS, learners,
                            results, errors)
    for t in threads:
        t.join(timeout=120)
    return server.wait(timeout=60), server, errors, out


@pytest.mark.slow
@pytest.mark.reliability(
    scenario="slow, throttled, lossy network (fault proxy: 20 ms per chunk, 2 MB/s, "
             "70 % of connections cut at a random byte)",
    expected="every round closes with every client; final weights identical to a clean run")
@pytest.mark.parametrize("cut_within", [3_000, 200_000], ids=["cuts-in-headers",
                                                               "cuts-mid-body"])
def test_rounds_close_correctly_over_a_slow_lossy_network(tmp_path, cut_within, observe):
    code, server, errors, out = federate_through(tmp_path / "clean")
    assert code == 0 and not errors, server.output
    expected = (out / FINAL_WEIGHTS).read_bytes()
    with FaultProxy(0, delay_s=0.02, bytes_per_s=2_000_000, cut_probability=0.7,
                    cut_within=cut_within, seed=1) as proxy:
        code, server, errors, out = federate_through(tmp_path / "faulty", proxy)
    assert not errors, errors
    assert code == 0, server.output
    assert proxy.cuts > 0, "the proxy never cut a connection: the test proves nothing"
    assert all(f"round={r}/{ROUNDS} clients={CLIENTS}" in server.output
               for r in range(1, ROUNDS + 1))
    assert (out / FINAL_WEIGHTS).read_bytes() == expected
    assert f"done={CLIENTS}/{CLIENTS}" in server.output  # every client's done arrived too
    observe(f"{proxy.cuts} of {proxy.connections} connections cut; {ROUNDS}/{ROUNDS} rounds "
            f"with {CLIENTS} clients; final weights byte-identical")
