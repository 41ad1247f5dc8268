"""``python -m server_component`` as a real process: serves, shuts down, writes outputs."""

import csv
import json
import re
import subprocess
import sys

import pytest
import requests

from contract import wire
from server_component.outputs import FINAL_WEIGHTS, ROUND_METRICS, SUMMARY
from tests.support.live_aggregator import small_weights
from tests.support.paths import REPO_ROOT


def start(tmp_path, *extra, env=None, counts=("--num-clients", "2", "--rounds", "2")):
    proc = subprocess.Popen(
        [sys.executable, "-m", "server_component", "--host", "127.0.0.1", "--port", "0",
         *counts, "--out", str(tmp_path), *extra],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    for line in proc.stdout:
        match = re.search(r"event=listening url=(\S+)", line)
        if match:
            return proc, match.group(1)
    raise AssertionError(f"aggregator did not start: {proc.wait()}")


def test_serves_every_round_then_exits_0_with_its_outputs(tmp_path):
    proc, url = start(tmp_path, "--token", "s3cret")
    try:
        http = requests.Session()
        http.headers["Authorization"] = "Bearer s3cret"
        http.post(f"{url}/v1/init", data=wire.encode(small_weights(), {"client_id": "0"}))
        for round_ in (1, 2):
            for cid in (0, 1):
                meta = wire.UpdateMeta(cid, round_, 10 * (cid + 1), {"val_accuracy": 0.5})
                body = wire.encode(small_weights(cid), meta.to_metadata())
                assert http.post(f"{url}/v1/update", data=body).status_code == 202
        final = wire.decode(http.get(f"{url}/v1/model", params={"round": 2}).content)
        for cid in (0, 1):
            http.post(f"{url}/v1/done", json={"client_id": cid, "metrics": {"test_auc": 0.9}})
        output, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    assert "s3cret" not in output
    weights = wire.decode((tmp_path / FINAL_WEIGHTS).read_bytes())
    assert weights.tensors.keys() == final.tensors.keys()
    rows = list(csv.DictReader((tmp_path / ROUND_METRICS).open()))
    assert [r["round"] for r in rows] == ["1", "2"] and rows[0]["num_examples"] == "30"
    summary = json.loads((tmp_path / SUMMARY).read_text())
    assert summary["rounds_completed"] == 2 and summary["final_metrics"] == {"test_auc": 0.9}


def test_flags_come_from_fl_env_vars(tmp_path):
    import os

    env = {**os.environ, "FL_NUM_CLIENTS": "3", "FL_ROUNDS": "4", "FL_TOKEN": "from-env"}
    proc, url = start(tmp_path, env=env, counts=())
    try:
        assert requests.get(f"{url}/v1/status", timeout=5).status_code == 401
        status = requests.get(f"{url}/v1/status", timeout=5,
                              headers={"Authorization": "Bearer from-env"}).json()
        assert status["num_clients"] == 3 and status["rounds"] == 4
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("argv, message", [
    (["--num-clients", "0", "--rounds", "1"], "--num-clients must be at least 1"),
    (["--num-clients", "2", "--rounds", "0"], "--rounds must be at least 1"),
    (["--rounds", "1"], "--num-clients"),
    (["--num-clients", "2", "--rounds", "1", "--port", "70000"], "--port must be in"),
])
def test_bad_flags_exit_2_with_a_clear_message(argv, message):
    result = subprocess.run([sys.executable, "-m", "server_component", *argv], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr


def test_oversized_updates_get_json_413_and_absurd_ones_are_never_read(tmp_path):
    proc, url = start(tmp_path, "--max-update-mb", "1")
    try:
        body = b"x" * (1024 * 1024 + 10)
        over = requests.post(f"{url}/v1/update", data=body, timeout=10)
        assert over.status_code == 413 and over.json()["error"] == "payload_too_large"
        # Far past the limit, waitress refuses from the Content-Length alone.
        absurd = requests.post(f"{url}/v1/update", timeout=10, data=b"",
                               headers={"Content-Length": str(50 * 1024 * 1024)})
        assert absurd.status_code == 413
        status = requests.get(f"{url}/v1/status", timeout=5).json()
        assert status["reported"] == [] and status["model_version"] == -1
    finally:
        proc.kill()
        proc.wait()
