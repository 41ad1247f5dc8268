"""Run-lifecycle components: the Service in front of the aggregator, the volume that keeps
its checkpoints across a retry, and the exit task that deletes both.

All read the run id and namespace from the pod (``KFP_RUN_ID`` / ``KFP_NAMESPACE``, mapped
from the pod's ``pipeline/runid`` label and namespace by the pipeline), never from
placeholders, and derive object names from them with one shared helper.
"""

from typing import NamedTuple

from components.embedding import runtime_component
from components.runtime import PYTHON_IMAGE, SERVICE_PACKAGES


@runtime_component(["server_component"], base_image=PYTHON_IMAGE,
                   packages_to_install=SERVICE_PACKAGES)
def create_service(port: int) -> NamedTuple("ServiceInfo", [("url", str), ("token", str)]):
    """Create Service fl-<run id> selecting this run's aggregator; output its URL and a
    fresh bearer token for the run."""
    import secrets

    from server_component import k8s_objects

    run_id, namespace = k8s_objects.run_identity()
    url = k8s_objects.create_service(run_id, namespace, port)
    return (url, secrets.token_urlsafe(32))


@runtime_component(["server_component"], base_image=PYTHON_IMAGE,
                   packages_to_install=SERVICE_PACKAGES)
def create_checkpoint_volume(size: str) -> str:
    """Create the claim fl-<run id>-checkpoint for the aggregator's checkpoints; its name."""
    from server_component import k8s_objects

    run_id, namespace = k8s_objects.run_identity()
    return k8s_objects.create_checkpoint_pvc(run_id, namespace, size)


@runtime_component(["server_component"], base_image=PYTHON_IMAGE,
                   packages_to_install=SERVICE_PACKAGES)
def delete_service():
    """Delete this run's Service and checkpoint volume (the exit task: runs whatever
    happened before, and succeeds when they are already gone)."""
    from server_component import k8s_objects

    run_id, namespace = k8s_objects.run_identity()
    k8s_objects.delete_run_objects(run_id, namespace)
