"""The KFP v2 pipeline: per-run Service, aggregator and N parallel clients, always torn down.

The task graph:

    ExitHandler(exit_task = delete_service)      deletes the Service and the volume
      create_service             -> Service fl-<run id>, its URL and the run's secret token
      create_checkpoint_volume   -> PVC fl-<run id>-checkpoint
      aggregator(token, ...)     -> pod labelled fl-role=aggregator (+ pipeline/runid by KFP),
                                    the volume mounted for checkpoints, retried by KFP
      export_model(final_model)  -> the final model as Keras model.keras (+ raw weights)
      ParallelFor(client_credentials(num_clients, token), parallelism=0)
          client(url, credential, ...)   (its own token; data_pvc mounted when one is named)
"""


import inspect
import os

from kfp import dsl, kubernetes
from kfp.dsl.pipeline_channel import PipelineParameterChannel

from client_component.settings import ClientConfig
from components.aggregator import aggregator
from components.client import client, client_credentials, export_model
from components.service import create_checkpoint_volume, create_service, delete_service
from pipelines.parameters import component_arguments, pipeline_parameters
from pipelines.platform_spec import ExecutorNeeds
from server_component.k8s_objects import (
    AGGREGATOR_ROLE,
    CLIENT_ROLE,
    NAMESPACE_ENV,
    ROLE_LABEL,
    RUN_ID_ENV,
    RUN_ID_LABEL,
)
from server_component.settings import AggregatorConfig

PIPELINE_NAME = "fl-on-kubeflow"
DESCRIPTION = ("Federated learning (FedAvg) for medical data: an HTTP aggregator and N Keras "
               "clients behind a per-run Kubernetes Service.")
DEFAULT_NUM_CLIENTS = 5
CLIENT_RETRIES = 2
AGGREGATOR_RETRIES = 2
CHECKPOINT_MOUNT = "/fl/checkpoint"
# The run parameters (pipelines.deployment) that make up a client pod's image and resources.
CLIENT_POD_PARAMETERS = ("client_image", "client_cpu_request", "client_memory_request",
                         "client_accelerator_type", "client_accelerator_count")
DATA_MOUNT = "/fl/data"


_RUN_IDENTITY = {RUN_ID_ENV: f"metadata.labels['{RUN_ID_LABEL}']",
                 NAMESPACE_ENV: "metadata.namespace"}
# What each task's pod must get from the platform config; compile checks the YAML against it.
PLATFORM_NEEDS = (
    ExecutorNeeds("exec-create-service", _RUN_IDENTITY),
    ExecutorNeeds("exec-create-checkpoint-volume", _RUN_IDENTITY),
    ExecutorNeeds("exec-delete-service", _RUN_IDENTITY),
    ExecutorNeeds("exec-export-model", _RUN_IDENTITY),
    ExecutorNeeds("exec-aggregator", _RUN_IDENTITY, {ROLE_LABEL: AGGREGATOR_ROLE},
                  mounts=(CHECKPOINT_MOUNT,)),
    ExecutorNeeds("exec-client", _RUN_IDENTITY, {ROLE_LABEL: CLIENT_ROLE},
                  mounted_by_some=(DATA_MOUNT,)),
)


def default_num_clients() -> int:
    """The compile-time default of ``num_clients``: ``NUM_OF_CLIENTS`` or 5."""
    raw = os.environ.get("NUM_OF_CLIENTS", "").strip()
    value = int(raw) if raw else DEFAULT_NUM_CLIENTS
    if value < 1:
        raise ValueError(f"NUM_OF_CLIENTS must be at least 1, got {value}")
    return value


def _with_run_identity(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Hand the task its run id and namespace from its own pod (downward API); no task of
    a federated run may be served from the cache."""
    for name, field_path in _RUN_IDENTITY.items():
        kubernetes.use_field_path_as_env(task, name, field_path)
    return task.set_caching_options(False)


def _client_task(arguments: dict, p: dict[str, PipelineParameterChannel]) -> dsl.PipelineTask:
    worker = _with_run_identity(client(**arguments)).set_display_name("client")
    worker.set_retry(CLIENT_RETRIES, "10s")
    # Resolved by the KFP driver when the pod starts (backend 2.4+): an empty accelerator
    # type asks for none, whatever the count.
    pod = [p[name] for name in CLIENT_POD_PARAMETERS]
    image, cpu, memory, accelerator, count = pod
    worker.set_container_image(image).set_cpu_request(cpu).set_memory_request(memory)
    worker.set_accelerator_type(accelerator).set_accelerator_limit(count)
    # The SDK passes only the image's channel down through the ParallelFor and dsl.If DAGs;
    # without the others the client's driver fails: "parent DAG does not have input
    # parameter pipelinechannel--client_cpu_request".
    worker.register_pipeline_channels(pod)
    kubernetes.add_pod_label(worker, ROLE_LABEL, CLIENT_ROLE)
    return worker


def _federated_run(p: dict[str, PipelineParameterChannel]) -> None:
    """The graph, over the pipeline parameters ``p`` (by name)."""
    teardown = _with_run_identity(delete_service())
    with dsl.ExitHandler(teardown, name="federated-run"):
        service = _with_run_identity(create_service(port=p["aggregator_port"]))
        volume = _with_run_identity(create_checkpoint_volume(size=p["checkpoint_size"]))
        server = _with_run_identity(aggregator(**component_arguments(
            AggregatorConfig, p, token=service.outputs["token"],
            checkpoint_dir=CHECKPOINT_MOUNT)))
        server.set_retry(AGGREGATOR_RETRIES, "5s")
        server.set_cpu_request("500m").set_memory_request("1Gi")
        kubernetes.add_pod_label(server, ROLE_LABEL, AGGREGATOR_ROLE)
        kubernetes.mount_pvc(server, pvc_name=volume.output, mount_path=CHECKPOINT_MOUNT)
        exported = _with_run_identity(export_model(
            final_model=server.outputs["final_model"],
            mlflow_tracking_uri=p["mlflow_tracking_uri"]))
        exported.set_display_name("export-model").set_memory_request("2Gi")
        credentials = client_credentials(num_clients=p["num_clients"],
                                         run_token=service.outputs["token"])
        credentials.set_caching_options(False)
        with dsl.ParallelFor(credentials.output, parallelism=0) as credential:
            arguments = component_arguments(ClientConfig, p, server=service.outputs["url"],
                                            credential=credential)
            # A data volume is optional, and mounting an empty claim name would fail.
            with dsl.If(p["data_pvc"] != "", name="with-data-volume"):
                worker = _client_task(arguments, p)
                kubernetes.mount_pvc(worker, pvc_name=p["data_pvc"], mount_path=DATA_MOUNT)
            with dsl.Else(name="without-data-volume"):
                _client_task(arguments, p)


def build_pipeline(num_clients_default: int = DEFAULT_NUM_CLIENTS,
                   client_image_default: str | None = None):
    """The pipeline with ``num_clients`` defaulting to ``num_clients_default`` (and
    ``client_image`` to ``client_image_default`` when given); its parameters are the
    settings of ``pipelines.parameters.PIPELINE_SETTINGS``."""
    parameters = pipeline_parameters(
        num_clients_default, {"client_image": client_image_default} if client_image_default
        else None)

    def federated_learning(*channels: PipelineParameterChannel) -> None:
        _federated_run({p.name: channel for p, channel in zip(parameters, channels,
                                                               strict=True)})

    # KFP reads the parameters off the signature and their descriptions off the docstring.
    federated_learning.__signature__ = inspect.Signature([
        inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default,
                          annotation=p.type) for p in parameters])
    federated_learning.__doc__ = "\n".join(
        [DESCRIPTION, "", "Args:", *(f"    {p.name}: {p.help}" for p in parameters)])
    return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(federated_learning)
