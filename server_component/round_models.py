"""Every round's global model, and the one a run exports (``keep_round_models``,
``select_model``).

``select_model=best:<metric>`` picks the round whose round-table metric was best: the
clients' validation metrics of that round, weighted by examples (``val_auc``, ...; a name
with ``loss`` in it is best when lowest). The best model so far is kept on disk (one model's
size), next to the checkpoint when there is one, so that a restarted aggregator still has
it; once training ends, the aggregator serves it as the final model, so the clients' test
metrics, the exported weights and ``model.keras`` are all that round's.

``keep_round_models`` also keeps each round's model (``round-<r>.safetensors``), copied under
the final model artifact at the end, up to ``round_models_max_mb`` in all: past that, later
rounds are not kept (said once in the log).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server_component.checkpoint import RoundRecord

log = logging.getLogger(__name__)

BEST_FILE = "best.safetensors"
ROUNDS_DIR = "rounds"


class SelectionError(ValueError):
    """A ``select_model`` value that is neither ``last`` nor ``best:<metric>``."""


def parse_selection(text: str) -> str | None:
    """The metric of ``best:<metric>``, or None for ``last``; SelectionError otherwise."""
    if text == "last":
        return None
    kind, _, metric = text.partition(":")
    if kind != "best" or not metric.strip():
        raise SelectionError(f"select_model {text!r} is not accepted; accepted: last, "
                             "best:<metric> (e.g. best:val_auc, best:val_loss)")
    return metric.strip()


def selection_problem(name: str, value: Any) -> str | None:
    """The settings check of ``select_model``."""
    try:
        parse_selection(str(value))
    except SelectionError as exc:
        return str(exc).replace("select_model", name, 1)
    return None


def round_file(round_: int) -> str:
    """The file name of round ``round_``'s model."""
    return f"round-{round_:04d}.safetensors"


@dataclass(frozen=True)
class Selection:
    """Which round's model a run exports, and why."""

    round: int
    rule: str  # "last" or "best:<metric>"
    value: float | None = None  # the metric's value in that round
    note: str = ""  # why the rule fell back to the last round

    def describe(self) -> str:
        """One phrase for logs and the report."""
        if self.value is None:
            return f"round {self.round} ({self.rule}{'; ' + self.note if self.note else ''})"
        return f"round {self.round} ({self.rule} = {self.value:.4f})"


def select(history: Sequence[RoundRecord], metric: str | None) -> Selection:
    """The round ``metric`` picks among the closed rounds (the earliest of equals); the last
    round for ``last`` or when no round has the metric."""
    last = history[-1].round if history else 0
    if metric is None:
        return Selection(last, "last")
    rule = f"best:{metric}"
    scored = [(r.metrics[metric], r.round) for r in history if metric in r.metrics]
    if not scored:
        return Selection(last, rule, note=f"no round reported {metric}: the last round")
    lower = "loss" in metric
    value, round_ = (min(scored) if lower else
                     min(scored, key=lambda pair: (-pair[0], pair[1])))
    return Selection(round_, rule, value)


class RoundModels:
    """The best model so far (with ``best:<metric>``) and, with ``keep``, every round's."""

    def __init__(self, metric: str | None, keep: bool, max_bytes: int,
                 directory: str | os.PathLike | None = None) -> None:
        self.metric, self.keep, self.max_bytes = metric, keep, max_bytes
        self._temporary = directory is None  # no checkpoint volume: removed by ``close``
        self.directory = Path(directory) if directory else Path(
            tempfile.mkdtemp(prefix="fl-round-models-"))
        (self.directory / ROUNDS_DIR).mkdir(parents=True, exist_ok=True)
        self._full = False

    @property
    def needed(self) -> bool:
        """Whether anything is kept at all."""
        return self.keep or self.metric is not None

    def closed(self, history: Sequence[RoundRecord], body: bytes | memoryview) -> None:
        """Keep the model of the round that just closed (``history[-1]``), as needed."""
        round_ = history[-1].round
        if self.metric is not None and select(history, self.metric).round == round_:
            _atomic_write(self.directory / BEST_FILE, body)
        if self.keep and not self._full:
            kept = sum(p.stat().st_size for p in (self.directory / ROUNDS_DIR).iterdir())
            if kept + len(body) > self.max_bytes:
                self._full = True
                log.warning("event=round_models_full round=%d kept_mb=%.1f limit_mb=%.1f: "
                            "later rounds' models are not kept", round_, kept / 2 ** 20,
                            self.max_bytes / 2 ** 20)
            else:
                _atomic_write(self.directory / ROUNDS_DIR / round_file(round_), body)

    def best_body(self) -> bytes | None:
        """The best round's model as kept, or None (none kept yet)."""
        path = self.directory / BEST_FILE
        return path.read_bytes() if path.is_file() else None

    def close(self) -> None:
        """Remove the models kept in a temporary directory (beside a checkpoint they stay,
        for a restart)."""
        if self._temporary:
            shutil.rmtree(self.directory, ignore_errors=True)

    def copy_rounds(self, target: Path) -> list[str]:
        """Copy the kept round models into ``target/rounds``; their names."""
        if not self.keep:
            return []
        (target / ROUNDS_DIR).mkdir(parents=True, exist_ok=True)
        names = sorted(p.name for p in (self.directory / ROUNDS_DIR).iterdir())
        for name in names:
            shutil.copyfile(self.directory / ROUNDS_DIR / name, target / ROUNDS_DIR / name)
        return names


def _atomic_write(path: Path, data: bytes | memoryview) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
