"""The KFP sample this project replaces, rebuilt faithfully as the baseline: Flask's
development server, weights posted as ``json.dumps(w.tolist())`` in form fields, module-level
state behind locks, handlers that sleep-poll until every client has posted, and the average
returned as JSON in the POST's response."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np

from bench.harness import REPO_ROOT, model_weights, peak_rss_mib
from bench.transport.rounds import DesignResult, RoundPlan, client_loop, run_lockstep

POLL_S = 1.0  # the sample slept 1 to 3 s per check; the shortest favours the baseline


def create_app(num_clients: int):
    from flask import Flask, request

    app = Flask(__name__)
    lock = threading.Lock()
    rounds: dict[int, dict] = {}

    @app.route("/data", methods=["POST"])
    def data():
        round_ = int(request.form["round"])
        weights = json.loads(request.form["weights"])
        local_count = int(request.form["local_count"])
        with lock:
            state = rounds.setdefault(round_, {"posted": [], "average": None, "served": 0})
            state["posted"].append((weights, local_count))
        while True:  # the sample's busy wait
            with lock:
                if len(state["posted"]) == num_clients:
                    break
            time.sleep(POLL_S)
        with lock:
            if state["average"] is None:
                global_count = sum(count for _, count in state["posted"])
                state["average"] = [
                    sum(np.array(w[i]) * (count / global_count) for w, count in state["posted"])
                    for i in range(len(weights))]
            body = json.dumps([layer.tolist() for layer in state["average"]])
            state["served"] += 1
            if state["served"] == num_clients:
                del rounds[round_]
        return body

    return app


def serve(num_clients: int) -> None:
    """Entry point of the server process: print the port, serve until killed."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, create_app(num_clients), threaded=True)
    print(server.port, flush=True)
    server.serve_forever()


def measure(plan: RoundPlan) -> DesignResult:
    proc = subprocess.Popen(
        [sys.executable, "-c", f"from bench.transport.seed_design import serve; "
                               f"serve({plan.num_clients})"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(proc.stdout.readline())
        times, wire_bytes = run_lockstep(plan, _client, port)
        peak = peak_rss_mib(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    return DesignResult("seed design (KFP sample)", times, wire_bytes, peak)


def _client(cid: int, plan: RoundPlan, barrier, queue, port: int) -> None:
    import requests

    session = requests.Session()
    update = model_weights(plan.params, seed=cid + 1)

    def one_round(round_: int) -> int:
        form = {"round": str(round_), "local_count": str(10 + cid),
                "weights": json.dumps([w.tolist() for w in update])}
        request = session.prepare_request(
            requests.Request("POST", f"http://127.0.0.1:{port}/data", data=form))
        response = session.send(request, timeout=3600)
        response.raise_for_status()
        [np.asarray(layer, np.float32) for layer in json.loads(response.content)]
        return len(request.body) + len(response.content)

    client_loop(barrier, queue, plan.total_rounds, one_round)
