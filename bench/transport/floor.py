"""The floor: the same bytes over raw loopback TCP sockets into a numpy running sum, and
the average sent back; no HTTP, no serialization, no validation."""

from __future__ import annotations

import multiprocessing as mp
import socket
import threading
from functools import partial

import numpy as np

from bench.harness import model_weights, peak_rss_mib
from bench.transport.rounds import DesignResult, RoundPlan, client_loop, run_lockstep


def _serve(plan: RoundPlan, results) -> None:
    """One persistent connection per client; each round: read every client's float32
    vector, add it into a float64 sum, send every client the float32 mean."""
    listener = socket.create_server(("127.0.0.1", 0))
    results.put(listener.getsockname()[1])
    try:
        conns = [listener.accept()[0] for _ in range(plan.num_clients)]
        buffers = [bytearray(4 * plan.params) for _ in conns]
        lock = threading.Lock()
        for _ in range(plan.total_rounds):
            total = np.zeros(plan.params, np.float64)
            _each(conns, buffers, partial(_receive_and_add, total=total, lock=lock))
            mean = memoryview((total / len(conns)).astype(np.float32)).cast("B")
            _each(conns, buffers, partial(_send, data=mean))
        for conn in conns:
            conn.close()
        results.put(peak_rss_mib())
    except Exception as exc:
        results.put(f"floor server failed: {exc!r}")


def _each(conns, buffers, action) -> None:
    threads = [threading.Thread(target=action, args=pair)
               for pair in zip(conns, buffers, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _send(conn: socket.socket, _buffer: bytearray, data: memoryview) -> None:
    conn.sendall(data)


def _receive_and_add(conn: socket.socket, buffer: bytearray, total: np.ndarray,
                     lock: threading.Lock) -> None:
    recv_exactly(conn, buffer)
    with lock:
        np.add(total, np.frombuffer(buffer, np.float32), out=total)


def recv_exactly(conn: socket.socket, buffer: bytearray) -> None:
    view, filled = memoryview(buffer), 0
    while filled < len(buffer):
        count = conn.recv_into(view[filled:])
        if not count:
            raise ConnectionError("peer closed mid-message")
        filled += count


def measure(plan: RoundPlan) -> DesignResult:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    server = ctx.Process(target=_serve, args=(plan, results), daemon=True)
    server.start()
    try:
        port = results.get(timeout=60)
        times, wire_bytes = run_lockstep(plan, _client, port)
        outcome = results.get(timeout=120)
    finally:
        server.join(timeout=30)
        if server.is_alive():
            server.kill()
    if isinstance(outcome, str):
        raise RuntimeError(outcome)
    return DesignResult("floor (raw TCP + numpy sum)", times, wire_bytes, outcome)


def _client(cid: int, plan: RoundPlan, barrier, queue, port: int) -> None:
    conn = socket.create_connection(("127.0.0.1", port))
    update = np.concatenate(model_weights(plan.params, seed=cid + 1))
    received = bytearray(4 * plan.params)

    def one_round(_round: int) -> int:
        conn.sendall(memoryview(update).cast("B"))
        recv_exactly(conn, received)
        np.frombuffer(received, np.float32)
        return 2 * update.nbytes

    client_loop(barrier, queue, plan.total_rounds, one_round)
    conn.close()

