"""Faults around the aggregator process: clients that start before it, an aggregator that
never comes up, a client that dies for good, a disk that fills up mid-run and an output
directory that cannot be written."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import pytest

from server_component.checkpoint import CHECKPOINT_FILE, load_checkpoint
from tests.reliability.test_resilience import run_federation, start_clients
from tests.support.aggregator_process import AggregatorProcess
from tests.support.live_aggregator import free_port
from tests.support.numpy_learner import NumpyLearner
from tests.support.paths import REPO_ROOT

MAX_BACKOFF_S = 10.0  # AggregatorClient.wait_ready doubles its wait up to this


@pytest.mark.slow
@pytest.mark.reliability(
    scenario="aggregator unreachable at start (clients start 4 s before it)",
    expected=f"clients back off and join within {MAX_BACKOFF_S:.0f} s of it listening; "
             "the run completes")
def test_clients_started_before_the_aggregator_join_when_it_comes_up(tmp_path, observe):
    port = free_port()
    learners = [NumpyLearner(cid) for cid in range(3)]
    results, errors = {}, {}
    threads = start_clients(port, 3, 2, learners, results, errors)
    time.sleep(4)
    listening = time.monotonic()
    server = AggregatorProcess(port, tmp_path / "out", "--num-clients", "3", "--rounds", "2")
    assert server.wait_for("event=init ", timeout=MAX_BACKOFF_S + 5), server.output
    joined_after = time.monotonic() - listening
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert server.wait() == 0, server.output
    assert sorted(results) == [0, 1, 2]
    observe(f"first client joined {joined_after:.1f} s after the aggregator started; "
            "2/2 rounds with 3 clients")


@pytest.mark.slow
@pytest.mark.reliability(
    scenario="aggregator never comes up (client CLI, --connect-timeout 3)",
    expected="the client gives up after its timeout: one line naming the URL, exit 1 "
             "(a KFP retry may try again)")
def test_a_client_gives_up_on_an_absent_aggregator_with_one_line(observe):
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "client_component", "--server", url, "--client-id", "0",
         "--num-clients", "1", "--rounds", "1", "--dataset", "synthetic",
         "--connect-timeout", "3"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    # TensorFlow's own start-up lines come before it (TF 2.21 ignores TF_CPP_MIN_LOG_LEVEL).
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == f"client 0: aggregator at {url} not reachable within 3 s"
    assert "Traceback" not in result.stderr
    observe(f"exit 1 after {elapsed:.0f} s (TensorFlow start-up included): {last_line!r}")


@pytest.mark.slow
@pytest.mark.reliability(
    scenario="a client dies for good in round 2 (min_clients 2, round timeout 5 s)",
    expected="each later round closes at its deadline with the quorum; the run completes")
def test_a_client_that_dies_for_good_leaves_the_quorum_to_finish(tmp_path, observe):
    def client_2_dies(cid, round_):
        if cid == 2 and round_ == 2:
            raise RuntimeError("client 2 was killed")

    server, learners, results, errors, _ = run_federation(
        tmp_path, flags=("--min-clients", "2", "--round-timeout", "5", "--shutdown-grace", "3"),
        before_fit=client_2_dies)
    assert list(errors) == [2] and sorted(results) == [0, 1]
    assert server.wait() == 0, server.output
    for round_ in (2, 3, 4):
        assert f"event=deadline round={round_} closing_with=[0, 1] missing=[2]" in server.output
    assert "round=4/4 clients=2" in server.output
    closings = re.findall(r"event=deadline round=(\d+) closing_with=(\[.*?\]) missing=(\[.*?\])",
                          server.output)
    observe("; ".join(f"round {r} closed with {w}, missing {m}" for r, w, m in closings)
            + "; exit 0")


def _mount_tmpfs(path, size: str) -> None:
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.strip()}")


def _fill(directory) -> None:
    with open(directory / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass  # full


@pytest.mark.slow
@pytest.mark.reliability(
    scenario="disk full mid-run (a 1 MiB tmpfs holds checkpoints and outputs, filled after "
             "round 2)",
    expected="training goes on; checkpoint_failed logged; the outputs fail with one clear "
             "line, exit 1; the round-2 checkpoint stays intact and resumable")
def test_a_full_disk_never_corrupts_the_checkpoint(tmp_path, observe):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "1m")
    try:
        hold = threading.Event()

        def wait_in_round_3(cid, round_):
            if round_ == 3:
                hold.wait(60)

        def fill_after_round_2(server, port, out):
            assert server.wait_for("round=2/4 ", timeout=60)
            time.sleep(0.2)  # the round-2 checkpoint is written right after the round closes
            _fill(disk)
            hold.set()

        server, _, results, errors, _ = run_federation(
            tmp_path, flags=("--checkpoint-dir", str(disk / "ckpt"), "--out",
                             str(disk / "out")),
            before_fit=wait_in_round_3, on_started=fill_after_round_2)
        assert not errors and len(results) == 3, errors
        assert server.wait() == 1, server.output
        assert "event=checkpoint_failed version=3" in server.output
        assert f"event=failed cannot write outputs to {disk / 'out'}: [Errno 28] No space " \
               "left on device" in server.output
        assert "Traceback" not in server.output
        config = {"num_clients": 3, "rounds": 4, "strategy": "fedavg"}
        checkpoint = load_checkpoint(disk / "ckpt", config)
        assert checkpoint.version == 2 and len(checkpoint.history) == 2
        assert sorted(p.name for p in (disk / "ckpt").iterdir()) == [CHECKPOINT_FILE]
        (disk / "filler").unlink()
        restarted = AggregatorProcess(free_port(), tmp_path / "out2", "--num-clients", "3",
                                      "--rounds", "4", "--checkpoint-dir", str(disk / "ckpt"))
        assert restarted.wait_for("event=resumed version=2 rounds_closed=2")
        restarted.proc.kill()
        failed = re.findall(r"event=checkpoint_failed version=(\d+)", server.output)
        [error] = re.findall(r"event=failed (.*)", server.output)
        observe(f"checkpoint_failed for versions {', '.join(failed)}; exit 1 with "
                f"'{error.replace(str(disk), '<disk>')}'; checkpoint v{checkpoint.version} "
                "intact and resumed")
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.reliability(
    scenario="unwritable output directory (--out below a regular file)",
    expected="refused before serving: one line naming the flag and the reason, exit 2")
def test_an_unwritable_output_directory_is_refused_at_start(tmp_path, observe):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "server_component", "--num-clients", "1", "--rounds", "1",
         "--port", "0", "--out", str(blocker / "out")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == \
        f"error: --out {blocker / 'out'} is not a writable directory: Not a directory"
    assert "event=listening" not in result.stdout
    observe(f"exit 2: {result.stderr.strip()!r}")

