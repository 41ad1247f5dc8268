"""A loopback TCP proxy that makes the network bad on purpose: it delays every chunk, caps
the bandwidth, and cuts connections at random (seeded) points: a cut connection is closed in
both directions after a random number of bytes, in headers or mid-body, as a dropped link or
a restarted node looks to both ends. Random, not every n-th: a periodic pattern can alias
with a client's own pattern of connections (a probe, then a request) and cut only requests.
Stands in for tc netem where the kernel has no netem qdisc or the sandbox no namespaces."""

from __future__ import annotations

import random
import socket
import threading
import time


class FaultProxy:
    def __init__(self, target_port: int, delay_s: float = 0.0, bytes_per_s: float = 0.0,
                 cut_probability: float = 0.0, cut_within: int = 65536, seed: int = 0) -> None:
        self.target_port = target_port
        self.delay_s, self.bytes_per_s = delay_s, bytes_per_s
        self.cut_probability, self.cut_within = cut_probability, cut_within
        self.seed = seed
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopped.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            # Where this connection dies (bytes in either direction), or never: drawn from
            # the seed and the connection's number, so a failing run replays connection by
            # connection (as far as the clients connect in the same order).
            draw = random.Random(self.seed * 1_000_003 + self.connections)
            cut_at = (draw.randrange(self.cut_within)
                      if draw.random() < self.cut_probability else None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()  # the aggregator is down: the client sees a refused/closed link
                continue
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, client, upstream, cut_at),
                                 daemon=True).start()

    def _pump(self, src, dst, client, upstream, cut_at: int | None) -> None:
        forwarded = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.delay_s:
                    time.sleep(self.delay_s)
                if self.bytes_per_s:
                    time.sleep(len(data) / self.bytes_per_s)
                if cut_at is not None and forwarded + len(data) > cut_at:
                    with self._lock:
                        self.cuts += 1
                    break
                dst.sendall(data)
                forwarded += len(data)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
