"""Where things are: the repository, the shared real data, the Kubernetes schema version."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# The Kubernetes schema version the manifests and created objects are validated against.
K8S_SCHEMA_VERSION = "1.31.0"
