"""The client task and the fan-out that lists client ids for the ParallelFor."""

from kfp import dsl
from kfp.dsl import Input, Model, Output

from client_component.settings import ClientConfig
from components.embedding import runtime_component
from components.from_settings import settings_function
from components.runtime import CLIENT_PACKAGES, PYTHON_IMAGE, TENSORFLOW_IMAGE


@dsl.component(base_image=PYTHON_IMAGE)
def client_ids(num_clients: int) -> list[int]:
    """The ids 0..num_clients-1, one ParallelFor iteration each. Typed ``list[int]``: the
    KFP backend then types each loop item NUMBER_INTEGER, as ``client.client_id`` is
    declared; a bare ``list`` makes the items STRING and every client's driver refuses
    them (``type mismatch: expect NUMBER_INTEGER, got string``)."""
    if num_clients < 1:
        raise ValueError(f"num_clients must be at least 1, got {num_clients}")
    return list(range(num_clients))


# One input per client setting (client_component.settings.ClientConfig).
client = runtime_component(["client_component", "contract"], base_image=TENSORFLOW_IMAGE,
                           packages_to_install=CLIENT_PACKAGES)(settings_function(
    "client", ClientConfig, "client_component.run:run_client_task",
    doc="Train on this client's data for every round, exchanging weights with the "
        "aggregator."))


@runtime_component(["client_component", "contract"], base_image=TENSORFLOW_IMAGE,
                   packages_to_install=CLIENT_PACKAGES)
def export_model(final_model: Input[Model], keras_model: Output[Model]):
    """The final global model as a Keras ``model.keras`` (the architecture a client registered
    with its init, the aggregator's final weights), beside the raw safetensors weights."""
    from client_component.export import export_keras

    metadata = export_keras(final_model.path, keras_model.path)
    keras_model.metadata.update({**final_model.metadata, **metadata})
