"""Every setting of the aggregator, defined once (``contract.settings`` derives the CLI flags,
the ``FL_*`` variables, the pipeline parameters, the component inputs, the argument checks and
the README table from it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from contract import privacy, sampling
from contract.secagg import params as secagg
from contract.settings import CrossCheck, Namer, at_least, in_range, parses, setting, values_of
from contract.tracking import DEFAULT_EXPERIMENT
from server_component import round_models, tracking
from server_component.strategies import STRATEGIES, StrategyError, parse_strategy

DEFAULT_MAX_UPDATE_MB = 1024.0


def _min_clients_in_run(values: Mapping, name: Namer) -> str | None:
    minimum, clients = values["min_clients"], values["num_clients"]
    if minimum == 0 or 1 <= minimum <= clients:
        return None
    return (f"{name('min_clients')} must be 0 (all clients) or in "
            f"1..{name('num_clients')}={clients}, got {minimum}")


def _sampling_with_secagg(values: Mapping, name: Namer) -> str | None:
    if values["fraction_fit"] >= 1 or values["secure_aggregation"] == "off":
        return None
    return (f"{name('fraction_fit')}={values['fraction_fit']:g} is not supported with "
            f"{name('secure_aggregation')}=secagg (its key rounds span every client); use "
            f"{name('fraction_fit')}=1")


# Strategies that need only the round's average: they work on the unmasked sum and on the
# noised sum of clipped updates.
AVERAGE_ONLY_STRATEGIES = ("fedavg", "fedavgm", "fedadam")


def _average_only_strategy(setting: str, value: str, why: str) -> CrossCheck:
    """Refuse a strategy that needs more than the round's average when ``setting`` is
    ``value``; ``why`` says what it would be given instead."""
    def check(values: Mapping, name: Namer) -> str | None:
        if values[setting] != value:
            return None
        if values["strategy"].partition(":")[0] in AVERAGE_ONLY_STRATEGIES:
            return None
        return (f"{name('strategy')}={values['strategy']} cannot work on {why}; with "
                f"{name(setting)}={value} use {', '.join(AVERAGE_ONLY_STRATEGIES)}")
    return CrossCheck((setting, "strategy"), check)


@dataclass(frozen=True)
class AggregatorConfig:
    """How the aggregator runs a federation: its size, rounds, strategy, deadlines, where it
    listens and where it keeps checkpoints and outputs."""

    num_clients: int = setting(help="clients taking part, ids 0..N-1 (in a pipeline: a run-time "
                               "parameter, no recompile)", check=at_least(1))
    rounds: int = setting(help="federated rounds; the final model is version ROUNDS",
                          check=at_least(1), pipeline_default=5)
    strategy: str = setting("fedavg", f"{', '.join(f'`{s}`' for s in STRATEGIES)} (README: "
                            "The aggregator)", check=parses(parse_strategy, StrategyError))
    min_clients: int = setting(0, "fewest updates a round may close with at its deadline "
                               "(0: all clients)", check=at_least(0))
    round_timeout: float = setting(0.0, "seconds a round stays open before it closes with "
                                   "`min_clients` or fails; 0: no deadline",
                                   check=at_least(0))
    max_update_mb: float = setting(DEFAULT_MAX_UPDATE_MB, "larger init/update bodies (MiB) get "
                                   "413, from Content-Length, before reading",
                                   check=at_least(0, strict=True))
    shutdown_grace: float = setting(300.0, "seconds to wait for every client's done after "
                                    "the final model", check=at_least(0))
    threads: int = setting(0, "waitress worker threads; 0 = clients + 4", check=at_least(0))
    # Client sampling (contract.sampling): which clients train each round
    fraction_fit: float = sampling.fraction_setting()
    min_fit_clients: int = sampling.min_fit_setting()
    seed: int = setting(0, "seed of the split, of model initialisation and of shuffling "
                        "(clients), and of each round's client sample (aggregator)")
    secure_aggregation: str = secagg.mode_setting()
    secagg_threshold: int = secagg.threshold_setting()
    secagg_neighbours: int = secagg.neighbours_setting()
    secagg_clip: float = secagg.clip_setting()
    secagg_max_examples: int = secagg.max_examples_setting()
    # Differential privacy (contract.privacy); `client`: this aggregator clips and noises
    dp: str = privacy.mode_setting()
    dp_noise_multiplier: float = privacy.noise_setting()
    dp_clip_norm: float = privacy.clip_setting()
    dp_delta: float = privacy.delta_setting()
    dp_target_epsilon: float = privacy.target_setting()
    dp_clip_quantile: float = privacy.quantile_setting()
    # Which round's model is exported, and every round's (server_component.round_models)
    select_model: str = setting("last", "the exported model: `last` (the last round's) or "
                                "`best:<metric>` (the round with the best round-table metric, "
                                "e.g. best:val_auc; lowest for a loss), served to the clients "
                                "as the final model", check=round_models.selection_problem)
    keep_round_models: bool = setting(False, "also keep every round's global model "
                                      "(rounds/round-NNNN.safetensors under the final model "
                                      "artifact), up to round_models_max_mb")
    round_models_max_mb: float = setting(4096.0, "most MiB of round models kept with "
                                         "keep_round_models; later rounds' are not kept",
                                         check=at_least(0, strict=True))
    # Experiment tracking (server_component.tracking)
    mlflow_tracking_uri: str = setting(
        "", "MLflow tracking server (e.g. http://mlflow.mlflow.svc:5000): the run's settings, "
        "per-round and final metrics, report and weights go to one MLflow run tagged "
        "kfp_run_id, and the exported model.keras as an MLflow model; empty: off",
        check=tracking.tracking_uri_problem)
    mlflow_experiment: str = setting(DEFAULT_EXPERIMENT, "MLflow experiment of the runs "
                                     "(created when missing)", check=tracking.experiment_problem)
    # Where: the pipeline wires these (the pod's address, the Service port, the run's token,
    # the checkpoint volume, the output artifacts).
    host: str = setting("0.0.0.0", "bind address", wired=True, task_input=False)
    port: int = setting(8080, "TCP port of the aggregator and its Service (command line: 0 "
                        "picks a free port, logged as `event=listening url=...`)",
                        check=in_range(0, 65535), parameter="aggregator_port")
    token: str = setting("", "bearer token every /v1 call must carry (compared in constant "
                         "time); empty: no auth",
                         wired=True, secret=True, report=False)
    checkpoint_dir: str = setting("", "checkpoint each closed round here; a restart resumes "
                                  "from it (checked writable at start)", wired=True)
    out: str = setting("", "directory for the outputs (final weights, metrics tables, "
                       "summary, report; checked writable at start); a pipeline task writes "
                       "into its artifacts instead", wired=True,
                       task_input=False, report=False)

    cross_checks = (CrossCheck(("min_clients", "num_clients"), _min_clients_in_run),
                    CrossCheck(sampling.CROSS_NAMES, sampling.sampling_problem),
                    CrossCheck(("fraction_fit", "secure_aggregation"), _sampling_with_secagg),
                    _average_only_strategy("secure_aggregation", "secagg", "masked inputs (it "
                                           "needs each client's update or its step count)"),
                    CrossCheck(secagg.CROSS_NAMES, secagg.settings_problem),
                    CrossCheck(privacy.SETTING_NAMES, privacy.settings_problem),
                    CrossCheck(privacy.BUDGET_NAMES, privacy.client_budget_problem),
                    CrossCheck(privacy.ADAPTIVE_NAMES, privacy.adaptive_problem),
                    _average_only_strategy("dp", "client", "clipped, noised updates (the noise "
                                           "is calibrated to one sum)"))

    @property
    def max_update_bytes(self) -> int:
        """``max_update_mb`` in bytes: the largest init or update body accepted."""
        return int(self.max_update_mb * 1024 * 1024)

    @property
    def secagg_params(self) -> secagg.SecAggParams | None:
        """The secure-aggregation parameters; None when it is off."""
        if self.secure_aggregation == "off":
            return None
        values = values_of(self)
        return privacy.secagg_params(secagg.params_of(values), values)

    @property
    def sampling(self) -> sampling.ClientSampling:
        """How each round's clients are picked (Poisson and unseeded under dp=client)."""
        return sampling.ClientSampling(self.num_clients, self.fraction_fit, self.min_fit_clients,
                                       self.seed, poisson=self.dp == "client")

    @property
    def server_threads(self) -> int:
        """Waitress worker threads: ``threads``, or one per client plus 4 when it is 0."""
        return self.threads or self.num_clients + 4
