"""The Service lifecycle code against the kubernetes client's real HTTP requests."""

import kubernetes_validate
import pytest
import yaml

from server_component import k8s_objects
from tests.support.http_recorder import HttpRecorder
from tests.support.paths import K8S_SCHEMA_VERSION

RUN_ID = "0b6ef1d4-3f7e-4a53-9c7e-2a8f0c1d9e11"


@pytest.fixture(autouse=True)
def _outside_a_cluster(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def api_for(recorder: HttpRecorder, tmp_path, monkeypatch):
    """The CoreV1Api the components build (core_api), pointed at the recorder by kubeconfig."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "rec",
        "clusters": [{"name": "rec", "cluster": {"server": recorder.url}}],
        "users": [{"name": "rec", "user": {"token": "t"}}],
        "contexts": [{"name": "rec", "context": {"cluster": "rec", "user": "rec"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    return k8s_objects.core_api(retries=3, backoff_s=0.01)


def test_service_name_is_per_run_and_dns_safe():
    assert k8s_objects.service_name(RUN_ID) == f"fl-{RUN_ID}"
    odd = k8s_objects.service_name("Run_ID.With.Dots" + "x" * 80)
    assert len(odd) <= 63 and odd.startswith("fl-run-id-with-dots")
    assert odd != k8s_objects.service_name("Run_ID.With.Dots" + "x" * 81)


def test_manifest_selects_only_this_runs_aggregator_and_is_schema_valid():
    manifest = k8s_objects.service_manifest(RUN_ID, "team-a", 8080)
    assert manifest["spec"]["selector"] == {"pipeline/runid": RUN_ID, "fl-role": "aggregator"}
    assert manifest["spec"]["ports"][0]["port"] == 8080
    kubernetes_validate.validate(manifest, K8S_SCHEMA_VERSION, strict=True)


def test_create_posts_the_service_and_returns_its_cluster_url(tmp_path, monkeypatch):
    with HttpRecorder() as recorder:
        api = api_for(recorder, tmp_path, monkeypatch)
        recorder.replies = [(201, {"kind": "Service", "apiVersion": "v1"})]
        url = k8s_objects.create_service(RUN_ID, "team-a", 8080, api=api)
    assert url == f"http://fl-{RUN_ID}.team-a.svc.cluster.local:8080"
    [request] = recorder.requests
    assert (request.method, request.path) == ("POST", "/api/v1/namespaces/team-a/services")
    assert request.json == k8s_objects.service_manifest(RUN_ID, "team-a", 8080)


def test_create_when_it_already_exists_succeeds_as_a_kfp_retry_needs(tmp_path, monkeypatch):
    with HttpRecorder() as recorder:
        api = api_for(recorder, tmp_path, monkeypatch)
        recorder.replies = [(409, recorder.k8s_status(409, "AlreadyExists"))]
        url = k8s_objects.create_service(RUN_ID, "team-a", 8080, api=api)
    assert url.startswith(f"http://fl-{RUN_ID}.")


def test_transient_server_errors_are_retried(tmp_path, monkeypatch):
    with HttpRecorder() as recorder:
        api = api_for(recorder, tmp_path, monkeypatch)
        recorder.replies = [(503, recorder.k8s_status(503, "ServiceUnavailable")),
                            (201, {"kind": "Service", "apiVersion": "v1"})]
        k8s_objects.create_service(RUN_ID, "team-a", 8080, api=api)
    assert [r.method for r in recorder.requests] == ["POST", "POST"]


def test_forbidden_is_raised_not_swallowed(tmp_path, monkeypatch):
    from kubernetes.client.exceptions import ApiException

    with HttpRecorder() as recorder:
        api = api_for(recorder, tmp_path, monkeypatch)
        recorder.replies = [(403, recorder.k8s_status(403, "Forbidden"))]
        with pytest.raises(ApiException) as info:
            k8s_objects.create_service(RUN_ID, "team-a", 8080, api=api)
    assert info.value.status == 403


def test_checkpoint_claim_is_created_per_run_and_schema_valid(tmp_path, monkeypatch):
    manifest = k8s_objects.checkpoint_pvc_manifest(RUN_ID, "team-a", "2Gi")
    kubernetes_validate.validate(manifest, K8S_SCHEMA_VERSION, strict=True)
    with HttpRecorder() as recorder:
        api = api_for(recorder, tmp_path, monkeypatch)
        recorder.replies = [(201, {"kind": "PersistentVolumeClaim", "apiVersion": "v1"}),
                            (409, recorder.k8s_status(409, "AlreadyExists"))]
        for _ in range(2):  # a KFP retry creates it again
            name = k8s_objects.create_checkpoint_pvc(RUN_ID, "team-a", "2Gi", api=api)
            assert name == f"fl-{RUN_ID}-checkpoint"
    assert [(r.method, r.path) for r in recorder.requests] == [
        ("POST", "/api/v1/namespaces/team-a/persistentvolumeclaims")] * 2
    assert recorder.requests[0].json == manifest


def test_teardown_deletes_service_and_claim_and_absent_ones_are_fine(tmp_path, monkeypatch):
    ok = (200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
    with HttpRecorder() as recorder:
        api = api_for(recorder, tmp_path, monkeypatch)
        recorder.replies = [ok, ok, (404, recorder.k8s_status(404, "NotFound")),
                            (404, recorder.k8s_status(404, "NotFound"))]
        assert k8s_objects.delete_run_objects(RUN_ID, "team-a", api=api) == {
            "service": True, "pvc": True}
        assert k8s_objects.delete_run_objects(RUN_ID, "team-a", api=api) == {
            "service": False, "pvc": False}
    assert [(r.method, r.path) for r in recorder.requests] == [
        ("DELETE", f"/api/v1/namespaces/team-a/services/fl-{RUN_ID}"),
        ("DELETE", f"/api/v1/namespaces/team-a/persistentvolumeclaims/fl-{RUN_ID}-checkpoint"),
    ] * 2


@pytest.mark.parametrize("env, message", [
    ({}, "KFP_RUN_ID is empty"),
    ({"KFP_RUN_ID": "{{$.pipeline_job_uuid}}", "KFP_NAMESPACE": "a"}, "unresolved"),
    ({"KFP_RUN_ID": RUN_ID}, "KFP_NAMESPACE is empty"),
    ({"KFP_RUN_ID": "bad id!", "KFP_NAMESPACE": "a"}, "not a valid Kubernetes label value"),
])
def test_run_identity_errors_say_what_to_fix(monkeypatch, env, message):
    monkeypatch.delenv("KFP_RUN_ID", raising=False)
    monkeypatch.delenv("KFP_NAMESPACE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(k8s_objects.RunIdentityError, match=message):
        k8s_objects.run_identity()


def test_run_identity_from_the_pod_env(monkeypatch):
    monkeypatch.setenv("KFP_RUN_ID", RUN_ID)
    monkeypatch.setenv("KFP_NAMESPACE", "team-a")
    assert k8s_objects.run_identity() == (RUN_ID, "team-a")
