"""Checkpoints of closed rounds: one safetensors file, written atomically (temp + fsync +
rename), so a restarted aggregator resumes at the last closed round and a crash or a full
disk mid-write never leaves a torn checkpoint behind."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from contract import wire

CHECKPOINT_FILE = "checkpoint.safetensors"
_GLOBAL, _STATE = "global/", "state/"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used for this run (unreadable or a different run setup)."""


@dataclass
class RoundRecord:
    """What one closed round looked like: who reported, how much data, their metrics."""

    round: int
    client_ids: list[int]
    num_examples: int
    metrics: dict[str, float]
    duration_s: float
    missing: list[int] = field(default_factory=list)
    # Per client (JSON keys are strings): its validation metrics and examples this round.
    client_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    client_examples: dict[str, int] = field(default_factory=dict)
    # The privacy ledger after the round (server_component.run_privacy); empty with dp off.
    privacy: dict = field(default_factory=dict)
    # The clients sampled to train in it (contract.sampling); empty in older checkpoints.
    selected: list[int] = field(default_factory=list)


@dataclass
class RunInfo:
    """What the clients said about the run at init: informative only (the outputs and the
    report show it), kept in checkpoints so that a resumed run still has it."""

    partitions: dict[int, dict] = field(default_factory=dict)  # client id -> label histogram
    client_settings: dict = field(default_factory=dict)  # how they train, as the first said
    architecture: str = ""  # the adopted init's model, as its framework serialised it

    def to_json(self) -> dict:
        """The JSON a checkpoint stores (client ids as string keys); ``from_json`` reads it."""
        return {"partitions": {str(c): p for c, p in self.partitions.items()},
                "settings": self.client_settings, "architecture": self.architecture}

    @classmethod
    def from_json(cls, data: Mapping) -> RunInfo:
        """Read ``to_json``'s JSON back; missing keys (older checkpoints) give empty values."""
        return cls({int(c): p for c, p in data.get("partitions", {}).items()},
                   dict(data.get("settings", {})), data.get("architecture", ""))


@dataclass
class Checkpoint:
    """A closed round's state: everything a restarted aggregator resumes from."""

    version: int
    model: dict[str, np.ndarray]
    strategy_state: dict[str, np.ndarray]
    history: list[RoundRecord]
    config: dict[str, str | int]
    run_info: RunInfo = field(default_factory=RunInfo)


def save_checkpoint(directory: str | os.PathLike, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` atomically into ``directory``; returns the file's path."""
    target = Path(directory) / CHECKPOINT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = {**{_GLOBAL + k: v for k, v in checkpoint.model.items()},
               **{_STATE + k: v for k, v in checkpoint.strategy_state.items()}}
    metadata = {
        "version": str(checkpoint.version),
        "history": json.dumps([asdict(r) for r in checkpoint.history]),
        "config": json.dumps(checkpoint.config, sort_keys=True),
        "run_info": json.dumps(checkpoint.run_info.to_json(), sort_keys=True),
    }
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            wire.write(handle, tensors, metadata)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(target.parent)
    return target


def load_checkpoint(directory: str | os.PathLike,
                    expected_config: Mapping[str, str | int]) -> Checkpoint | None:
    """The checkpoint in ``directory``, None if there is none; CheckpointError if it belongs
    to a run set up differently (clients, rounds, strategy)."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        tensors = load_file(str(path))
        metadata = wire.read_metadata(path.read_bytes())
        config = json.loads(metadata["config"])
        history = [RoundRecord(**r) for r in json.loads(metadata["history"])]
        version = int(metadata["version"])
        run_info = RunInfo.from_json(json.loads(metadata.get("run_info", "{}")))
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    if config != dict(expected_config):
        raise CheckpointError(
            f"checkpoint {path} was written by a run with {config}, this run is "
            f"{dict(expected_config)}: use another --checkpoint-dir or remove it")
    return Checkpoint(
        version=version,
        model={k[len(_GLOBAL):]: v for k, v in tensors.items() if k.startswith(_GLOBAL)},
        strategy_state={k[len(_STATE):]: v for k, v in tensors.items() if k.startswith(_STATE)},
        history=history, config=config, run_info=run_info,
    )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
