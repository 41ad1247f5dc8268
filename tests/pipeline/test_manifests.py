"""manifests/: schema-valid objects, and RBAC granting exactly the verbs the code uses."""

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.support.paths import K8S_SCHEMA_VERSION, REPO_ROOT

MANIFESTS = REPO_ROOT / "manifests"


def kustomize_resources() -> list[dict]:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    objects = []
    for name in kustomization["resources"]:
        for obj in yaml.safe_load_all((MANIFESTS / name).read_text()):
            obj.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
            objects.append(obj)
    return objects


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    on_disk = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk


@pytest.mark.parametrize("obj", kustomize_resources(), ids=lambda o: o["kind"])
def test_every_object_is_schema_valid(obj):
    kubernetes_validate.validate(obj, K8S_SCHEMA_VERSION, strict=True)


def test_role_grants_exactly_what_the_service_tasks_use():
    role = next(o for o in kustomize_resources() if o["kind"] == "Role")
    assert role["rules"] == [{"apiGroups": [""],
                              "resources": ["services", "persistentvolumeclaims"],
                              "verbs": ["create", "delete"]}]
    # The code paths behind those verbs, and no others, talk to the API.
    source = Path(REPO_ROOT / "server_component" / "k8s_objects.py").read_text()
    calls = set(re.findall(r"api\.(\w+_namespaced_\w+)", source))
    assert calls == {"create_namespaced_service", "delete_namespaced_service",
                     "create_namespaced_persistent_volume_claim",
                     "delete_namespaced_persistent_volume_claim"}


def test_rolebinding_binds_the_pipeline_runner_accounts_to_that_role():
    objects = kustomize_resources()
    binding = next(o for o in objects if o["kind"] == "RoleBinding")
    role = next(o for o in objects if o["kind"] == "Role")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert {s["name"] for s in binding["subjects"]} == {"pipeline-runner", "default-editor"}
