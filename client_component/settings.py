"""Every setting of a federated client, defined once (``contract.settings`` derives the CLI
flags, the ``FL_*`` variables, the pipeline parameters, the component inputs, the argument
checks and the README table from it).

Importing this module loads no TensorFlow: a bad flag or pipeline argument fails in a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from client_component.datasets import DATASETS
from client_component.datasets.labels import UNCERTAINTY_POLICIES
from client_component.partition import PartitionError, parse_partition
from contract import credentials, privacy
from contract.secagg import params as secagg
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
DATASETS_NEEDING_DATA = ("npz", "image_folder", "csv", "chexpert")
MULTI_LABEL_DATASETS = ("npz", "chexpert")  # npz: when the file's labels are (N, L)


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


def _token_of_this_client(values: Mapping, name: Namer) -> str | None:
    token = values["token"]
    if not token.startswith(credentials.PREFIX + "."):
        return None  # the run secret (tests, a person debugging a run) or no auth at all
    try:
        owner = credentials.token_client_id(token)
    except credentials.CredentialError as exc:
        return f"{name('token')}: {exc}"
    if owner != values["client_id"]:
        return (f"{name('token')} is client {owner}'s, but {name('client_id')} is "
                f"{values['client_id']}")
    return None


def _data_for_dataset(values: Mapping, name: Namer) -> str | None:
    dataset = values["dataset"]
    if dataset in DATASETS_NEEDING_DATA and not values["data_uri"]:
        return (f"{name('data_uri')} is required for dataset {dataset} (a path, a path inside "
                "data_pvc, or an http(s) URL)")
    return None


def _labels_of_multi_label_data(values: Mapping, name: Namer) -> str | None:
    if values["labels"] and values["dataset"] not in MULTI_LABEL_DATASETS:
        return (f"{name('labels')} chooses the findings of multi-label data (dataset "
                f"{' or '.join(MULTI_LABEL_DATASETS)}); dataset {values['dataset']} has none")
    return None


def _data_dependent_loss_under_dp(values: Mapping, name: Namer) -> str | None:
    if values["dp"] != "example":
        return None
    # Both weigh the loss by this site's label counts: a release DP-SGD does not account for.
    for setting_name, plain in (("logit_adjustment", "none"), ("class_weights", "none")):
        if values[setting_name] != plain:
            return (f"{name('dp')}=example needs {name(setting_name)}={plain} (it is built "
                    "from the site's label counts, which DP-SGD does not account for)")
    return None


@dataclass(frozen=True)
class ClientConfig:
    """How one client takes part in a run: where the aggregator is, what data it trains on,
    the model and the local training."""

    # Who and where: the pipeline wires these (the Service URL, the run's token, the loop item).
    server: str = setting(help="aggregator base URL, e.g. http://127.0.0.1:8080", wired=True,
                          report=False)
    client_id: int = setting(help="this client's id, 0..num_clients-1", check=at_least(0),
                             wired=True, task_input=False, report=False)
    num_clients: int = setting(help="clients taking part, ids 0..num_clients-1",
                               check=at_least(1), report=False)
    rounds: int = setting(help="federated rounds; the final model is version ROUNDS",
                          check=at_least(1), pipeline_default=5, report=False)
    token: str = setting("", "this client's bearer token (contract.credentials: fl1.<id>.<mac>, "
                         "or the run secret)", wired=True, task_input=False, secret=True,
                         report=False)
    # Data
    dataset: str = setting("breast_cancer", "`breast_cancer`, `npz` (MedMNIST; multi-label "
                           "files such as ChestMNIST too), `image_folder`, `csv`, `chexpert` "
                           "(CheXpert CSV layout, multi-label), `synthetic` (smoke tests)",
                           check=one_of(DATASETS))
    data_uri: str = setting("", "a path, a path under the mounted `data_pvc` (`/fl/data/...`), "
                            "or an http(s) URL; `{client_id}` is replaced per client",
                            report=False)
    data_sha256: str = setting("", "expected sha256 of the data file or download",
                               report=False)
    label_column: str = setting("", "label column of a single CSV")
    labels: str = setting("", "multi-label data: the observations to learn, comma-separated "
                          "(e.g. `Cardiomegaly,Edema`); empty: CheXpert's five competition "
                          "observations, every label of an npz file")
    uncertainty: str = setting("u_ones", "CheXpert uncertain mentions (-1): `u_ones` "
                               "(positive), `u_zeros` (negative), `ignore` (left out of the "
                               "loss and the metrics)", check=one_of(UNCERTAINTY_POLICIES))
    image_size: int = setting(28, "image folders: resize to this square size",
                              check=at_least(8))
    channels: int = setting(1, "image folders: 1 grayscale, 3 RGB", check=one_of(CHANNELS))
    partition: str = setting("iid", "simulated split of one dataset: `iid`, "
                             "`dirichlet:<alpha>` (label skew), `quantity:<beta>` (unequal "
                             "sizes)",
                             check=parses(parse_partition, PartitionError))
    seed: int = setting(0, "seed of the split, of model initialisation and of shuffling "
                        "(clients), and of each round's client sample (aggregator)")
    # Model
    model: str = setting("auto", "`auto` (MLP for tables, CNN for images), `mlp`, `conv1d`, "
                         "`cnn`, `keras:<Application>`",
                         check=parses(parse_architecture, ArchitectureError))
    model_width: int = setting(32, "base units (MLP) or filters (CNN)", check=at_least(1),
                               aliases=("--width",))
    model_depth: int = setting(2, "layers (MLP) or conv blocks (CNN)", check=at_least(1),
                               aliases=("--depth",))
    norm: str = setting("group", "CNN normalisation: `group` (GroupNorm: no running statistics "
                        "to average, federated-safe) or `none`", check=one_of(NORMS))
    # Local training
    optimizer: str = setting("auto", "`auto`: SGD with momentum 0.9 for images, Adam for "
                             "tables; `sgd`, `adam`", check=one_of(OPTIMIZERS))
    learning_rate: float = setting(0.01, "local learning rate (of `optimizer`)",
                                   check=at_least(0, strict=True))
    local_epochs: int = setting(1, "local epochs per round", check=at_least(1))
    local_steps: int = setting(0, "> 0: exactly this many local batches per round (cycling "
                               "through a small site's data) instead of `local_epochs`, so "
                               "sites of very different sizes take the same number of steps",
                               check=at_least(0))
    batch_size: int = setting(32, "local batch size", check=at_least(1))
    fedprox_mu: float = setting(0.0, "FedProx proximal term (0: plain FedAvg local training)",
                                check=at_least(0))
    class_weights: str = setting("none", "`balanced`: weight classes by inverse local frequency "
                                 "(harmful under label skew: a site with 3 normal films weights "
                                 "each 26x); `none`", check=one_of(CLASS_WEIGHTS))
    logit_adjustment: str = setting("prior", "`prior`: each site trains on logits + log(its own "
                                    "label prior), so a site that sees mostly one class does "
                                    "not drag the shared model to it (label skew); `none`: "
                                    "plain cross-entropy", check=one_of(LOGIT_ADJUSTMENTS))
    fresh_optimizer: bool = setting(False, "reset the optimizer's state (momentum, Adam "
                                    "moments) at every round's global model (measured worse "
                                    "under label skew; off)")
    # Transport
    update_dtype: str = setting("float32", "`float16`: clients post half-size updates; the "
                                "aggregator averages in float64 and publishes float32",
                                check=one_of(UPDATE_DTYPES))
    connect_timeout_s: float = setting(600.0, "seconds to wait for the aggregator to come up",
                                       check=at_least(0, strict=True),
                                       flag="--connect-timeout", report=False)
    # Secure aggregation: the aggregator's settings, which the client checks before it shares
    secure_aggregation: str = secagg.mode_setting()
    secagg_threshold: int = secagg.threshold_setting()
    secagg_neighbours: int = secagg.neighbours_setting()
    secagg_clip: float = secagg.clip_setting()
    secagg_max_examples: int = secagg.max_examples_setting()

    # Differential privacy (contract.privacy): example-level at this site, or client-level
    dp: str = privacy.mode_setting()
    dp_noise_multiplier: float = privacy.noise_setting()
    dp_clip_norm: float = privacy.clip_setting()
    dp_delta: float = privacy.delta_setting()
    dp_target_epsilon: float = privacy.target_setting()

    cross_checks = (CrossCheck(("client_id", "num_clients"), _client_id_in_run),
                    CrossCheck(("client_id", "token"), _token_of_this_client),
                    CrossCheck(("dataset", "data_uri"), _data_for_dataset),
                    CrossCheck(("dataset", "labels"), _labels_of_multi_label_data),
                    CrossCheck(secagg.CROSS_NAMES, secagg.settings_problem),
                    CrossCheck(privacy.SETTING_NAMES, privacy.settings_problem),
                    CrossCheck(("dp", "logit_adjustment", "class_weights"),
                               _data_dependent_loss_under_dp))

    @property
    def secagg_params(self) -> secagg.SecAggParams | None:
        """The secure-aggregation parameters; None when it is off."""
        if self.secure_aggregation == "off":
            return None
        values = values_of(self)
        return privacy.secagg_params(secagg.params_of(values), values)

    @property
    def site_data_uri(self) -> str:
        """``data_uri`` with this client's id filled in (one file or folder per site)."""
        return self.data_uri.replace("{client_id}", str(self.client_id))

    def report_settings(self) -> dict:
        """How this client trains, for the run report (no token, no data location)."""
        reported = {s.name for s in settings_of(ClientConfig) if s.spec.report}
        return {k: v for k, v in values_of(self).items() if k in reported}
