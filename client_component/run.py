"""Running one client: ``run_client(config) -> ClientResult``. The command line
(``client_component.cli``) and the pipeline task (``run_client_task``) both come here, so a
client behaves the same whichever started it; they differ only in where the settings come
from.

Exit codes: 0 done; 1 the aggregator could not be reached or refused the client (the task
may succeed when KFP retries it); 2 bad settings or data (a retry would fail the same way).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from client_component.datasets import DatasetError
from client_component.partition import PartitionError
from client_component.settings import ClientConfig
from contract.credentials import CredentialError, token_client_id
from contract.settings import SettingsError, from_values

EXIT_OK, EXIT_RETRYABLE, EXIT_BAD_INPUT = 0, 1, 2


@dataclass(frozen=True)
class ClientResult:
    """What a client that took part in every round reports at the end."""

    client_id: int
    test_metrics: dict[str, float]  # the final global model on this client's test split


def run_client(config: ClientConfig) -> ClientResult:
    """Load this client's data, build the Keras model, and take part in every round."""
    from client_component.devices import log_devices
    from client_component.federated_client import federate
    from client_component.keras_learner import KerasLearner
    from client_component.transport import AggregatorClient

    log_devices()
    learner = KerasLearner.from_config(config)
    final = federate(learner, AggregatorClient(config.server, config.token), config)
    return ClientResult(config.client_id, final)


def run_logged(config: ClientConfig) -> int:
    """Run with log lines on stdout; a failure is one line on stderr and an exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        stream=sys.stdout, force=True)
    # Imported here: a bad setting fails before TensorFlow is loaded.
    from client_component.federated_client import OutOfStep, PrivacyMismatch
    from client_component.secure_participant import SessionMismatch, UnsafeRequest
    from client_component.transport import AggregatorError, AggregatorUnreachable
    from client_component.uplink import SecureAggregationOff
    from contract.secagg.quantize import QuantisationError

    try:
        run_client(config)
    except (DatasetError, PartitionError) as exc:
        return _failed(config.client_id, exc, EXIT_BAD_INPUT)
    except PrivacyMismatch as exc:
        return _failed(config.client_id, exc, EXIT_BAD_INPUT)
    except (UnsafeRequest, SessionMismatch, SecureAggregationOff, QuantisationError) as exc:
        # Secure aggregation refused (an unsafe request, settings the aggregator does not
        # share, a site over secagg_max_examples): a retry would meet the same.
        return _failed(config.client_id, exc, EXIT_BAD_INPUT)
    except (AggregatorUnreachable, AggregatorError, OutOfStep) as exc:
        return _failed(config.client_id, exc, EXIT_RETRYABLE)
    return EXIT_OK


def run_client_task(values: Mapping[str, Any]) -> None:
    """The pipeline's client task: its inputs (one per setting, and its ``credential``, the
    client token that says which client it is) in, SystemExit on failure."""
    values = dict(values)
    credential = values.pop("credential")
    try:
        values.update(client_id=token_client_id(credential), token=credential)
        config = from_values(ClientConfig, values)
    except (CredentialError, SettingsError) as exc:
        raise SystemExit(_failed(values.get("client_id", "?"), exc, EXIT_BAD_INPUT)) from None
    code = run_logged(config)
    if code:
        raise SystemExit(code)


def _failed(client_id: object, exc: Exception, code: int) -> int:
    print(f"client {client_id}: {exc}", file=sys.stderr)
    return code
