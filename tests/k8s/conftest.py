"""Session fixture: a real control plane (or, for ``make test-k8s``, the cluster that
``FL_K8S_KUBECONFIG`` points at), the test namespace, and credentials for the admin and for
the pipeline runner's ServiceAccount (a TokenRequest token, as a pod would hold)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import urllib3
import yaml

from tests.k8s.build import binaries

REQUIRE = os.environ.get("FL_REQUIRE_K8S") == "1"
EXTERNAL_KUBECONFIG = os.environ.get("FL_K8S_KUBECONFIG", "")
NAMESPACE = os.environ.get("FL_K8S_NAMESPACE", "kubeflow")
RUNNER = "pipeline-runner"


@dataclass
class Cluster:
    admin_kubeconfig: Path
    runner_kubeconfig: Path
    namespace: str
    start_s: float

    def api(self, kubeconfig: Path | None = None):
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig or self.admin_kubeconfig),
                                client_configuration=configuration)
        return client.ApiClient(configuration)


def _missing(reason: str):
    if REQUIRE:
        pytest.fail(f"FL_REQUIRE_K8S=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    if EXTERNAL_KUBECONFIG:
        yield _prepare(Path(EXTERNAL_KUBECONFIG), tmp_path_factory.mktemp("k8s"), 0.0,
                       runner_kubeconfig=None)
        return
    found = binaries()
    if not found:
        _missing("the Kubernetes test control plane is not built: run `make k8s-bin` "
                 "(needs Go; see README, Kubernetes tests)")
    from tests.k8s.control_plane import ControlPlane

    plane = ControlPlane(found["etcd"].parent).start()
    try:
        admin = plane.kubeconfig(plane.admin_token, "admin")
        yield _prepare(admin, plane.work, plane.started_s, runner_kubeconfig=plane.kubeconfig)
    finally:
        plane.stop()


def _prepare(admin: Path, work: Path, start_s: float, runner_kubeconfig) -> Cluster:
    """Namespace and runner ServiceAccount, and a kubeconfig holding that account's token."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    cluster = Cluster(admin, admin, NAMESPACE, start_s)
    core = client.CoreV1Api(cluster.api())
    for create, body in (
        (core.create_namespace, {"metadata": {"name": NAMESPACE}}),
        (lambda body: core.create_namespaced_service_account(NAMESPACE, body),
         {"metadata": {"name": RUNNER}}),
    ):
        try:
            create(body=body)
        except ApiException as exc:
            if exc.status != 409:
                raise
    token = core.create_namespaced_service_account_token(
        RUNNER, NAMESPACE, {"spec": {"expirationSeconds": 3600}}).status.token
    if runner_kubeconfig is not None:
        cluster.runner_kubeconfig = runner_kubeconfig(token, "runner")
    else:  # an external cluster: its admin kubeconfig with the runner's token instead
        config = yaml.safe_load(admin.read_text())
        config["users"] = [{"name": "runner", "user": {"token": token}}]
        for context in config["contexts"]:
            context["context"]["user"] = "runner"
        cluster.runner_kubeconfig = work / "runner.kubeconfig"
        cluster.runner_kubeconfig.write_text(yaml.safe_dump(config))
    _wait_for_default_service_account(core)
    return cluster


def _wait_for_default_service_account(core, timeout_s: float = 60) -> None:
    """Pods need the namespace's ``default`` account, which a controller creates."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        names = {sa.metadata.name for sa in core.list_namespaced_service_account(NAMESPACE).items}
        if "default" in names:
            return
        time.sleep(0.2)
    raise RuntimeError(f"no default ServiceAccount in {NAMESPACE} after {timeout_s} s")


@pytest.fixture
def run_id() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"
