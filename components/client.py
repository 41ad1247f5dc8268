"""The client task and the fan-out that lists client ids for the ParallelFor."""

from kfp.dsl import Input, Model, Output

from client_component.settings import ClientConfig
from components.embedding import runtime_component
from components.from_settings import settings_function
from components.runtime import (
    CLIENT_PACKAGES,
    EXPORT_PACKAGES,
    PYTHON_IMAGE,
    TENSORFLOW_IMAGE,
)


@runtime_component(["contract"], base_image=PYTHON_IMAGE)
def client_credentials(num_clients: int, run_token: str) -> list[str]:
    """One client token per client, 0..num_clients-1 (contract.credentials): each ParallelFor
    iteration hands one to its client, which can then act only as that client; the run's
    secret itself stays with the aggregator. Typed ``list[str]``: the KFP backend types each
    loop item STRING, as ``client.credential`` is declared."""
    from contract.credentials import client_tokens

    if num_clients < 1:
        raise ValueError(f"num_clients must be at least 1, got {num_clients}")
    return client_tokens(run_token, num_clients)


# One input per client setting (client_component.settings.ClientConfig), and the client's
# credential in place of its id and token (the id is part of the credential).
client = runtime_component(["client_component", "contract"], base_image=TENSORFLOW_IMAGE,
                           packages_to_install=CLIENT_PACKAGES)(settings_function(
    "client", ClientConfig, "client_component.run:run_client_task",
    doc="Train on this client's data for every round, exchanging weights with the "
        "aggregator.", extra=("credential: str",)))


@runtime_component(["client_component", "contract"], base_image=TENSORFLOW_IMAGE,
                   packages_to_install=EXPORT_PACKAGES)
def export_model(final_model: Input[Model], keras_model: Output[Model],
                 mlflow_tracking_uri: str = ""):
    """The final global model as a Keras ``model.keras`` (the architecture a client registered
    with its init, the aggregator's final weights), beside the raw safetensors weights; with
    MLflow tracking on, also an MLflow model in the aggregator's MLflow run."""
    from client_component.export import run_export_task

    run_export_task(final_model, keras_model, mlflow_tracking_uri)
