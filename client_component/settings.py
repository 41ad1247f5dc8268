"""Every setting of a federated client, defined once (``contract.settings`` derives the CLI
flags, the ``FL_*`` variables, the pipeline parameters, the component inputs, the argument
checks and the README table from it).

Importing this module loads no TensorFlow: a bad flag or pipeline argument fails in a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from client_component.datasets import DATASETS
from client_component.partition import PARTITIONS, PartitionError, parse_partition
from contract.settings import (
    CrossCheck,
    Namer,
    at_least,
    one_of,
    parses,
    setting,
    settings_of,
    values_of,
)

ARCHITECTURES = ("auto", "mlp", "conv1d", "cnn", "keras:<Application>")
NORMS = ("none", "group")
OPTIMIZERS = ("auto", "adam", "sgd")
CLASS_WEIGHTS = ("none", "balanced")
LOGIT_ADJUSTMENTS = ("none", "prior")  # client_component.label_prior
UPDATE_DTYPES = ("float32", "float16")
CHANNELS = (1, 3)
DATASETS_NEEDING_DATA = ("npz", "image_folder", "csv")


class ArchitectureError(ValueError):
    """A model name that is neither built in nor ``keras:<Application>``."""


def parse_architecture(name: str) -> str:
    """``name`` if it names a model this client can build (ArchitectureError if not)."""
    if name in ARCHITECTURES[:-1] or (name.startswith("keras:") and name[6:]):
        return name
    raise ArchitectureError(f"unknown model {name!r}; accepted: {', '.join(ARCHITECTURES)}")


def _client_id_in_run(values: Mapping, name: Namer) -> str | None:
    client_id, num_clients = values["client_id"], values["num_clients"]
    if 0 <= client_id < max(num_clients, 1):
        return None
    return f"{name('client_id')} must be in 0..{num_clients - 1}, got {client_id}"


def _data_for_dataset(values: Mapping, name: Namer) -> str | None:
    dataset = values["dataset"]
    if dataset in DATASETS_NEEDING_DATA and not values["data_uri"]:
        return (f"{name('data_uri')} is required for dataset {dataset} (a path, a path inside "
                "data_pvc, or an http(s) URL)")
    return None


@dataclass(frozen=True)
class ClientConfig:
    """How one client takes part in a run: where the aggregator is, what data it trains on,
    the model and the local training."""

    # Who and where: the pipeline wires these (the Service URL, the run's token, the loop item).
    server: str = setting(help="aggregator base URL, e.g. http://127.0.0.1:8080", wired=True,
                          report=False)
    client_id: int = setting(help="this client's id, 0..num_clients-1", check=at_least(0),
                             wired=True, report=False)
    num_clients: int = setting(help="clients in the run", check=at_least(1), report=False)
    rounds: int = setting(help="federated rounds; the final model is version ROUNDS",
                          check=at_least(1), pipeline_default=5, report=False)
    token: str = setting("", "aggregator bearer token", wired=True, secret=True, report=False)
    # Data
    dataset: str = setting("breast_cancer", f"one of {', '.join(DATASETS)}",
                           check=one_of(DATASETS))
    data_uri: str = setting("", "path, path inside data_pvc, or http(s) URL; {client_id} is "
                            "filled in", report=False)
    data_sha256: str = setting("", "expected sha256 of a data file or download", report=False)
    label_column: str = setting("", "label column of a single CSV")
    image_size: int = setting(28, "image folders: resize to this square size",
                              check=at_least(8))
    channels: int = setting(1, "image folders: 1 grayscale, 3 RGB", check=one_of(CHANNELS))
    partition: str = setting("iid", "simulated split of one dataset: "
                             f"{', '.join(PARTITIONS)}",
                             check=parses(parse_partition, PartitionError))
    seed: int = setting(0, "seed of the split, model init and shuffling")
    # Model
    model: str = setting("auto", "auto, mlp, conv1d, cnn or keras:<Application>",
                         check=parses(parse_architecture, ArchitectureError))
    model_width: int = setting(32, "base width (units or filters)", check=at_least(1),
                               aliases=("--width",))
    model_depth: int = setting(2, "layers (MLP) or conv blocks (CNN)", check=at_least(1),
                               aliases=("--depth",))
    norm: str = setting("group", "CNN normalisation: group (GroupNorm, federated-safe) or none",
                        check=one_of(NORMS))
    # Local training
    optimizer: str = setting("auto", "auto (SGD with momentum for images, Adam for tables), "
                             "adam or sgd", check=one_of(OPTIMIZERS))
    learning_rate: float = setting(0.01, "local learning rate", check=at_least(0, strict=True))
    local_epochs: int = setting(1, "local epochs per round", check=at_least(1))
    local_steps: int = setting(0, "local batches per round instead of epochs (0: use "
                               "local_epochs)", check=at_least(0))
    batch_size: int = setting(32, "local batch size", check=at_least(1))
    fedprox_mu: float = setting(0.0, "FedProx proximal term; 0 = plain FedAvg",
                                check=at_least(0))
    class_weights: str = setting("none", "none or balanced (inverse class frequency of the "
                                 "site's data)", check=one_of(CLASS_WEIGHTS))
    logit_adjustment: str = setting("prior", "prior: train on logits + log(this site's label "
                                    "prior), so a skewed site does not drag the model to its "
                                    "majority class; none", check=one_of(LOGIT_ADJUSTMENTS))
    fresh_optimizer: bool = setting(False, "reset the optimizer's state (momentum, Adam "
                                    "moments) every round")
    # Transport
    update_dtype: str = setting("float32", "dtype of the posted updates: float32, or float16 "
                                "to halve the upload (the aggregator averages in float64)",
                                check=one_of(UPDATE_DTYPES))
    connect_timeout_s: float = setting(600.0, "seconds to wait for the aggregator to come up",
                                       check=at_least(0, strict=True),
                                       flag="--connect-timeout", report=False)

    cross_checks = (CrossCheck(("client_id", "num_clients"), _client_id_in_run),
                    CrossCheck(("dataset", "data_uri"), _data_for_dataset))

    @property
    def site_data_uri(self) -> str:
        """``data_uri`` with this client's id filled in (one file or folder per site)."""
        return self.data_uri.replace("{client_id}", str(self.client_id))

    def report_settings(self) -> dict:
        """How this client trains, for the run report (no token, no data location)."""
        reported = {s.name for s in settings_of(ClientConfig) if s.spec.report}
        return {k: v for k, v in values_of(self).items() if k in reported}
