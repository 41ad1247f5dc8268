"""Service lifecycle components: the per-run Service in front of the aggregator.

Both read the run id and namespace from the pod (``KFP_RUN_ID`` / ``KFP_NAMESPACE``, mapped
from the pod's ``pipeline/runid`` label and namespace by the pipeline), never from
placeholders.
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

    from server_component import k8s_service

    run_id, namespace = k8s_service.run_identity()
    url = k8s_service.create_service(run_id, namespace, port)
    return (url, secrets.token_urlsafe(32))


@runtime_component(["server_component"], base_image=PYTHON_IMAGE,
                   packages_to_install=SERVICE_PACKAGES)
def delete_service():
    """Delete this run's Service (the exit task: runs whatever happened before)."""
    from server_component import k8s_service

    run_id, namespace = k8s_service.run_identity()
    k8s_service.delete_service(run_id, namespace)
