"""The client task and the fan-out that lists client ids for the ParallelFor."""

from kfp import dsl
from kfp.dsl import Input, Model, Output

from components.embedding import runtime_component
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


@runtime_component(["client_component", "contract"], base_image=TENSORFLOW_IMAGE,
                   packages_to_install=CLIENT_PACKAGES)
def client(
    server_url: str,
    token: str,
    client_id: int,
    num_clients: int,
    rounds: int,
    dataset: str,
    data_uri: str,
    data_sha256: str,
    label_column: str,
    image_size: int,
    partition: str,
    seed: int,
    model: str,
    model_width: int,
    model_depth: int,
    norm: str,
    local_epochs: int,
    local_steps: int,
    batch_size: int,
    learning_rate: float,
    fedprox_mu: float,
    class_weights: str,
    logit_adjustment: str,
    optimizer: str,
    update_dtype: str,
):
    """Train on this client's data for every round, exchanging weights with the aggregator."""
    import os

    from client_component.cli import main

    os.environ["FL_TOKEN"] = token  # env, not argv: argv shows in process listings
    exit_code = main([
        "--server", server_url, "--client-id", str(client_id),
        "--num-clients", str(num_clients), "--rounds", str(rounds), "--dataset", dataset,
        "--data-uri", data_uri, "--data-sha256", data_sha256, "--label-column", label_column,
        "--image-size", str(image_size), "--partition", partition, "--seed", str(seed),
        "--model", model, "--width", str(model_width), "--depth", str(model_depth),
        "--norm", norm, "--local-epochs", str(local_epochs), "--local-steps", str(local_steps),
        "--batch-size", str(batch_size), "--learning-rate", str(learning_rate),
        "--fedprox-mu", str(fedprox_mu), "--class-weights", class_weights,
        "--logit-adjustment", logit_adjustment, "--optimizer", optimizer,
        "--update-dtype", update_dtype,
    ])
    if exit_code:
        raise SystemExit(exit_code)


@runtime_component(["client_component", "contract"], base_image=TENSORFLOW_IMAGE,
                   packages_to_install=CLIENT_PACKAGES)
def export_model(final_model: Input[Model], keras_model: Output[Model]):
    """The final global model as a Keras ``model.keras`` (the architecture a client registered
    with its init, the aggregator's final weights), beside the raw safetensors weights."""
    from client_component.export import export_keras

    metadata = export_keras(final_model.path, keras_model.path)
    keras_model.metadata.update({**final_model.metadata, **metadata})
