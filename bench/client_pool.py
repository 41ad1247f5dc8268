"""Client processes that import TensorFlow once and take part in many federated runs.

A sweep runs dozens of federated trainings; starting every client as a fresh process would
spend most of its time importing TensorFlow. Each worker here is a real, separate process
running the project's client (``client_component.run.run_client``) against a
real aggregator over loopback HTTP, one run after another. Every client of a run gets its own
worker, since a client blocks until the others have reported.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# One TensorFlow thread per client: N clients share this machine's few cores.
WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTRAOP_THREADS": "1",
              "TF_NUM_INTEROP_THREADS": "1", "PYTHONUNBUFFERED": "1"}


class ClientRunFailed(RuntimeError):
    """A client of a pooled run raised; carries its traceback."""


def _serve(index: int, inbox: mp.Queue, outbox: mp.Queue) -> None:
    from client_component.run import run_client
    from client_component.settings import ClientConfig

    for job in iter(inbox.get, None):
        try:
            config = ClientConfig(**job)
            outbox.put((index, "ok", run_client(config)))
        except Exception:  # reported to the parent, which fails the run with it
            outbox.put((index, "error", traceback.format_exc()))
        finally:
            import keras

            keras.backend.clear_session()


class ClientPool:
    """``size`` worker processes; ``run`` gives job i to worker i and waits for all."""

    def __init__(self, size: int) -> None:
        context = mp.get_context("spawn")
        saved = {k: os.environ.get(k) for k in WORKER_ENV}
        os.environ.update(WORKER_ENV)  # spawned children take the parent's environment
        try:
            self._workers = []
            self._outbox = context.Queue()  # shared: the first failure is seen at once
            for index in range(size):
                inbox = context.Queue()
                process = context.Process(target=_serve, args=(index, inbox, self._outbox),
                                          daemon=True)
                process.start()
                self._workers.append((process, inbox))
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def run(self, jobs: Sequence[Mapping[str, Any]], timeout_s: float = 1800,
            on_failure: Callable[[], None] = lambda: None) -> list[dict]:
        """Each job's final test metrics; ClientRunFailed if any client raised. The first
        failure calls ``on_failure`` at once (stop the aggregator, so that the other
        clients give up instead of waiting for a round that cannot close)."""
        if len(jobs) > len(self._workers):
            raise ValueError(f"{len(jobs)} clients but only {len(self._workers)} workers")
        for (_, inbox), job in zip(self._workers, jobs, strict=False):
            inbox.put(dict(job))
        results: dict[int, dict] = {}
        failures: list[str] = []
        for _ in jobs:
            index, status, detail = self._outbox.get(timeout=timeout_s)
            if status == "ok":
                results[index] = detail
            else:
                failures.append(detail)
                if len(failures) == 1:
                    on_failure()
        if failures:
            raise ClientRunFailed(failures[0])
        return [results[index] for index in range(len(jobs))]

    def close(self) -> None:
        for _, inbox in self._workers:
            inbox.put(None)
        for process, _ in self._workers:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
