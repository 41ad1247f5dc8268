"""The project's Kubernetes code paths against a real kube-apiserver (see conftest.py): the
Service lifecycle, manifests/ applied as they are, least privilege for the pipeline runner,
two runs' endpoints, the NetworkPolicy's selectors, and the exit task's teardown."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client, utils
from kubernetes.client.exceptions import ApiException

from server_component import k8s_objects
from tests.pipeline.test_manifests import kustomize_resources

pytestmark = pytest.mark.k8s


def core(cluster, kubeconfig=None) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api(kubeconfig))


def as_runner(monkeypatch, cluster, run_id: str) -> None:
    """The environment a pipeline task has: its run id, namespace and ServiceAccount."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.runner_kubeconfig))
    monkeypatch.setenv(k8s_objects.RUN_ID_ENV, run_id)
    monkeypatch.setenv(k8s_objects.NAMESPACE_ENV, cluster.namespace)


def manifests(cluster) -> list[dict]:
    objects = kustomize_resources()
    for obj in objects:  # kustomize's namespace transformer, as `namespace:` would set it
        obj["metadata"]["namespace"] = cluster.namespace
    return objects


def apply_manifests(cluster, dry_run: str | None = None) -> None:
    kwargs = {"dry_run": dry_run} if dry_run else {}
    for obj in manifests(cluster):
        try:
            utils.create_from_dict(cluster.api(), obj, namespace=cluster.namespace, **kwargs)
        except utils.FailToCreateError as exc:
            if any(e.status != 409 for e in exc.api_exceptions):
                raise


def wait_until(predicate, timeout_s: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached in {timeout_s} s")


def test_service_lifecycle_through_the_task_code(cluster, run_id):
    api = core(cluster)
    url = k8s_objects.create_service(run_id, cluster.namespace, 8080, api=api)
    name = k8s_objects.service_name(run_id)
    assert url == f"http://{name}.{cluster.namespace}.svc.cluster.local:8080"
    service = api.read_namespaced_service(name, cluster.namespace)
    assert service.metadata.labels[k8s_objects.RUN_ID_LABEL] == run_id
    assert service.metadata.labels["app.kubernetes.io/part-of"] == "fl-on-kubeflow"
    assert service.spec.selector == k8s_objects.aggregator_selector(run_id)
    assert [(p.port, p.target_port) for p in service.spec.ports] == [(8080, 8080)]
    assert service.spec.cluster_ip  # the API server allocated one from its range
    k8s_objects.create_service(run_id, cluster.namespace, 8080, api=api)  # a KFP retry
    assert k8s_objects.delete_run_objects(run_id, cluster.namespace, api=api) == {
        "service": True, "pvc": False}
    with pytest.raises(ApiException) as gone:
        api.read_namespaced_service(name, cluster.namespace)
    assert gone.value.status == 404
    assert k8s_objects.delete_run_objects(run_id, cluster.namespace, api=api) == {
        "service": False, "pvc": False}


def test_the_manifests_are_accepted_by_the_api_server(cluster):
    apply_manifests(cluster, dry_run="All")
    apply_manifests(cluster)
    rbac = client.RbacAuthorizationV1Api(cluster.api())
    names = {o["kind"]: o["metadata"]["name"] for o in manifests(cluster)}
    role = rbac.read_namespaced_role(names["Role"], cluster.namespace)
    assert role.rules[0].verbs == ["create", "delete"]
    networking = client.NetworkingV1Api(cluster.api())
    assert networking.read_namespaced_network_policy(names["NetworkPolicy"], cluster.namespace)


def _allowed(cluster, verb: str, resource: str, namespace: str) -> bool:
    review = client.AuthorizationV1Api(cluster.api(cluster.runner_kubeconfig))
    body = {"spec": {"resourceAttributes": {"verb": verb, "resource": resource,
                                            "namespace": namespace}}}
    return review.create_self_subject_access_review(body).status.allowed


@pytest.mark.reliability(
    scenario="RBAC: the pipeline runner's ServiceAccount bound by manifests/ (kube-apiserver)",
    expected="the Service/PVC lifecycle succeeds; deleting pods, reading secrets, listing "
             "Services and any other namespace are Forbidden")
def test_the_runner_can_do_exactly_what_the_tasks_do(cluster, run_id, monkeypatch, observe):
    apply_manifests(cluster)
    as_runner(monkeypatch, cluster, run_id)
    k8s_objects.create_service(run_id, cluster.namespace, 8080)  # core_api() from KUBECONFIG
    k8s_objects.create_checkpoint_pvc(run_id, cluster.namespace, "1Gi")
    assert k8s_objects.delete_run_objects(run_id, cluster.namespace) == {
        "service": True, "pvc": True}
    for verb, resource in (("create", "services"), ("delete", "services"),
                           ("create", "persistentvolumeclaims"),
                           ("delete", "persistentvolumeclaims")):
        assert _allowed(cluster, verb, resource, cluster.namespace), (verb, resource)
    for verb, resource, namespace in (("delete", "pods", cluster.namespace),
                                      ("get", "secrets", cluster.namespace),
                                      ("list", "services", cluster.namespace),
                                      ("create", "services", "default")):
        assert not _allowed(cluster, verb, resource, namespace), (verb, resource, namespace)
    runner = core(cluster, cluster.runner_kubeconfig)
    forbidden = [
        lambda: runner.delete_collection_namespaced_pod(cluster.namespace),
        lambda: runner.list_namespaced_secret(cluster.namespace),
        lambda: k8s_objects.create_service(run_id, "default", 8080, api=runner),
    ]
    for call in forbidden:
        with pytest.raises(ApiException) as refused:
            call()
        assert refused.value.status == 403
    observe(f"lifecycle ok; {len(forbidden)} real requests -> 403; 4 access reviews denied")


NODE = "fl-test-node"


def _pod(run_id: str, role: str) -> dict:
    return {"metadata": {"name": f"{k8s_objects.service_name(run_id)}-{role}",
                         "labels": {k8s_objects.RUN_ID_LABEL: run_id,
                                    k8s_objects.ROLE_LABEL: role}},
            "spec": {"automountServiceAccountToken": False, "nodeName": NODE,
                     "containers": [{"name": role, "image": "python:3.11-slim"}]}}


def _ensure_node(api) -> None:
    """The node a kubelet would have registered: the EndpointSlice controller leaves out pods
    whose node it cannot find."""
    try:
        api.create_node({"metadata": {"name": NODE}})
    except ApiException as exc:
        if exc.status != 409:
            raise


def _running(api, name: str, namespace: str, ip: str) -> None:
    """What a kubelet reports for a started, ready pod."""
    api.patch_namespaced_pod_status(name, namespace, {"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True"}]}})


@pytest.fixture
def two_runs(cluster):
    """Two runs' aggregator and client pods, running, labelled as the pipeline labels them."""
    api = core(cluster)
    _ensure_node(api)
    runs = {}
    for index, run in enumerate(("a", "b")):
        run_id = f"run-{run}-{int(time.time() * 1000) % 10**8}"
        pods = {}
        for offset, role in enumerate((k8s_objects.AGGREGATOR_ROLE, k8s_objects.CLIENT_ROLE)):
            body = _pod(run_id, role)
            api.create_namespaced_pod(cluster.namespace, body)
            ip = f"10.244.{index}.{10 + offset}"
            _running(api, body["metadata"]["name"], cluster.namespace, ip)
            pods[role] = (body["metadata"]["name"], ip)
        runs[run] = (run_id, pods)
    yield runs
    for run_id, pods in runs.values():
        k8s_objects.delete_run_objects(run_id, cluster.namespace, api=api)
        for name, _ in pods.values():
            api.delete_namespaced_pod(name, cluster.namespace, grace_period_seconds=0)


def _endpoint_ips(cluster, run_id: str) -> set[str]:
    discovery = client.DiscoveryV1Api(cluster.api())
    # Raw JSON: the client's model refuses a slice whose endpoints are null (an empty slice,
    # which the controller writes before any pod is ready).
    response = discovery.list_namespaced_endpoint_slice(
        cluster.namespace, _preload_content=False,
        label_selector=f"kubernetes.io/service-name={k8s_objects.service_name(run_id)}")
    slices = json.loads(response.data)["items"]
    return {address for s in slices for e in (s.get("endpoints") or [])
            for address in e["addresses"]}


def test_each_run_service_selects_only_its_own_aggregator(cluster, two_runs):
    api = core(cluster)
    (run_a, pods_a), (run_b, pods_b) = two_runs["a"], two_runs["b"]
    for run_id in (run_a, run_b):
        k8s_objects.create_service(run_id, cluster.namespace, 8080, api=api)
    ip_a, ip_b = pods_a["aggregator"][1], pods_b["aggregator"][1]
    wait_until(lambda: _endpoint_ips(cluster, run_a) == {ip_a}, what="run A's endpoints")
    wait_until(lambda: _endpoint_ips(cluster, run_b) == {ip_b}, what="run B's endpoints")
    k8s_objects.delete_run_objects(run_a, cluster.namespace, api=api)
    assert api.read_namespaced_service(k8s_objects.service_name(run_b), cluster.namespace)
    time.sleep(1)  # give the controller a chance to (wrongly) touch run B
    assert _endpoint_ips(cluster, run_b) == {ip_b}


@pytest.mark.reliability(
    scenario="NetworkPolicy from manifests/ (kube-apiserver, two runs' pods)",
    expected="accepted; selects exactly the aggregator pods and admits only client pods")
def test_the_network_policy_selects_aggregators_and_admits_only_clients(cluster, two_runs,
                                                                        observe):
    apply_manifests(cluster)
    policy = next(o for o in manifests(cluster) if o["kind"] == "NetworkPolicy")
    accepted = client.NetworkingV1Api(cluster.api()).read_namespaced_network_policy(
        policy["metadata"]["name"], cluster.namespace)
    api = core(cluster)

    def pods_matching(match_labels: dict) -> set[str]:
        selector = ",".join(f"{k}={v}" for k, v in match_labels.items())
        ours = {name for _, pods in two_runs.values() for name, _ in pods.values()}
        found = api.list_namespaced_pod(cluster.namespace, label_selector=selector).items
        return {p.metadata.name for p in found} & ours

    aggregators = {pods["aggregator"][0] for _, pods in two_runs.values()}
    clients = {pods["client"][0] for _, pods in two_runs.values()}
    assert pods_matching(accepted.spec.pod_selector.match_labels) == aggregators
    [rule] = accepted.spec.ingress
    [peer] = rule._from
    assert pods_matching(peer.pod_selector.match_labels) == clients
    observe(f"selects {len(aggregators)} aggregator pods of {len(aggregators) + len(clients)};"
            f" admits the {len(clients)} client pods")


@pytest.mark.reliability(
    scenario="teardown after a failed run (exit task, kube-apiserver)",
    expected="no Service or PVC with the run's label remains")
def test_the_exit_task_leaves_nothing_of_a_failed_run(cluster, run_id, monkeypatch, observe):
    from components.service import create_checkpoint_volume, create_service, delete_service

    apply_manifests(cluster)
    as_runner(monkeypatch, cluster, run_id)
    create_service.python_func(port=8080)
    create_checkpoint_volume.python_func(size="1Gi")
    # ... the aggregator task fails here; the exit handler runs its task:
    delete_service.python_func()
    api = core(cluster)
    selector = f"{k8s_objects.RUN_ID_LABEL}={run_id}"

    def nothing_left() -> bool:
        services = api.list_namespaced_service(cluster.namespace, label_selector=selector)
        claims = api.list_namespaced_persistent_volume_claim(cluster.namespace,
                                                             label_selector=selector)
        return not services.items and not claims.items

    wait_until(nothing_left, what="no object labelled with the run id")
    observe(f"after delete_service: 0 Services, 0 PVCs labelled {selector}")
