"""The run's Kubernetes objects: the Service in front of the aggregator and the volume that
keeps its checkpoints across a retry. Create, delete, names, URL.

The run id comes from the pod itself (env ``KFP_RUN_ID`` from the label ``pipeline/runid``
that the KFP backend puts on every pod of a run), so the Service name and its selector
``{pipeline/runid: <run id>, fl-role: aggregator}`` are unique per run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from typing import Any

import urllib3

log = logging.getLogger(__name__)

RUN_ID_ENV = "KFP_RUN_ID"
NAMESPACE_ENV = "KFP_NAMESPACE"
RUN_ID_LABEL = "pipeline/runid"
ROLE_LABEL = "fl-role"
AGGREGATOR_ROLE = "aggregator"
CLIENT_ROLE = "client"
PART_OF = {"app.kubernetes.io/part-of": "fl-on-kubeflow"}
_DNS_1035_MAX = 63
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class RunIdentityError(RuntimeError):
    """The task could not learn which run (or namespace) it belongs to."""


def run_identity() -> tuple[str, str]:
    """(run id, namespace) as the pod's downward-API env vars give them."""
    run_id = os.environ.get(RUN_ID_ENV, "").strip()
    namespace = os.environ.get(NAMESPACE_ENV, "").strip()
    if not run_id or "{{" in run_id:
        raise RunIdentityError(
            f"{RUN_ID_ENV} is empty or unresolved ({run_id!r}): the pipeline must map the pod "
            "label pipeline/runid into it (kfp.kubernetes.use_field_path_as_env)"
        )
    if not namespace:
        raise RunIdentityError(f"{NAMESPACE_ENV} is empty: map metadata.namespace into it")
    if not _LABEL_VALUE.match(run_id) or len(run_id) > 63:
        raise RunIdentityError(f"run id {run_id!r} is not a valid Kubernetes label value")
    return run_id, namespace


def service_name(run_id: str) -> str:
    """``fl-<run id>`` as a DNS-1035 label; over-long or odd ids are shortened with a hash."""
    slug = re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-")
    name = f"fl-{slug}"
    if len(name) > _DNS_1035_MAX or slug != run_id:
        digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
        name = f"{name[: _DNS_1035_MAX - len(digest) - 1].rstrip('-')}-{digest}"
    return name


def checkpoint_pvc_name(run_id: str) -> str:
    """The run's checkpoint volume (PVC): ``<service name>-checkpoint``."""
    return f"{service_name(run_id)}-checkpoint"


def aggregator_selector(run_id: str) -> dict[str, str]:
    """The Service's pod selector: this run's aggregator pod, and no other run's."""
    return {RUN_ID_LABEL: run_id, ROLE_LABEL: AGGREGATOR_ROLE}


def aggregator_url(run_id: str, namespace: str, port: int) -> str:
    """The aggregator's URL inside the cluster, through the run's Service."""
    return f"http://{service_name(run_id)}.{namespace}.svc.cluster.local:{port}"


def _run_object(kind: str, name: str, run_id: str, namespace: str) -> dict[str, Any]:
    """A v1 object of this run, labelled with its run id (so teardown can find it)."""
    return {"apiVersion": "v1", "kind": kind, "metadata": {
        "name": name, "namespace": namespace, "labels": {RUN_ID_LABEL: run_id, **PART_OF}}}


def service_manifest(run_id: str, namespace: str, port: int) -> dict[str, Any]:
    """The Service object, as plain JSON the API server accepts."""
    return {
        **_run_object("Service", service_name(run_id), run_id, namespace),
        "spec": {
            "type": "ClusterIP",
            "selector": aggregator_selector(run_id),
            "ports": [{"name": "http", "protocol": "TCP", "port": port, "targetPort": port}],
        },
    }


def checkpoint_pvc_manifest(run_id: str, namespace: str, size: str) -> dict[str, Any]:
    """A ReadWriteOnce claim on the default StorageClass for the aggregator's checkpoints."""
    return {
        **_run_object("PersistentVolumeClaim", checkpoint_pvc_name(run_id), run_id, namespace),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


def core_api(retries: int = 5, backoff_s: float = 0.5) -> Any:
    """A CoreV1Api from the in-cluster service account, else the local kubeconfig; transient
    failures (connection errors, 429, 5xx) are retried with exponential backoff by urllib3."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        # Read KUBECONFIG now: the client library reads it once, at import.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"),
                                client_configuration=configuration)
    configuration.retries = urllib3.Retry(
        total=retries, backoff_factor=backoff_s, status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=None, raise_on_status=False,
    )
    return client.CoreV1Api(client.ApiClient(configuration))


def create_service(run_id: str, namespace: str, port: int, api: Any = None) -> str:
    """Create the run's Service (a KFP retry finding it already there is fine); its URL."""
    api = api or core_api()
    _create(api.create_namespaced_service, service_manifest(run_id, namespace, port))
    return aggregator_url(run_id, namespace, port)


def create_checkpoint_pvc(run_id: str, namespace: str, size: str, api: Any = None) -> str:
    """Create the run's checkpoint volume claim (idempotent); its name."""
    api = api or core_api()
    _create(api.create_namespaced_persistent_volume_claim,
            checkpoint_pvc_manifest(run_id, namespace, size))
    return checkpoint_pvc_name(run_id)


def delete_run_objects(run_id: str, namespace: str, api: Any = None) -> dict[str, bool]:
    """Delete the run's Service and checkpoint claim; which of them existed. Absent objects
    are success: the exit handler may run after any partial start."""
    api = api or core_api()
    return {
        "service": _delete(api.delete_namespaced_service, "Service", service_name(run_id),
                           namespace),
        "pvc": _delete(api.delete_namespaced_persistent_volume_claim, "PersistentVolumeClaim",
                       checkpoint_pvc_name(run_id), namespace),
    }


def _create(create, body: dict[str, Any]) -> None:
    from kubernetes.client.exceptions import ApiException

    kind, name, namespace = body["kind"], body["metadata"]["name"], body["metadata"]["namespace"]
    try:
        create(namespace=namespace, body=body)
        log.info("event=created kind=%s name=%s namespace=%s", kind, name, namespace)
    except ApiException as exc:
        if exc.status != 409:
            raise
        log.info("event=already_exists kind=%s name=%s namespace=%s", kind, name, namespace)


def _delete(delete, kind: str, name: str, namespace: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        delete(name=name, namespace=namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        log.info("event=absent kind=%s name=%s namespace=%s", kind, name, namespace)
        return False
    log.info("event=deleted kind=%s name=%s namespace=%s", kind, name, namespace)
    return True
