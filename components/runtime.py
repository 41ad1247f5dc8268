"""Images and runtime installs of the components: stock public images, no image build."""

from __future__ import annotations

PYTHON_IMAGE = "python:3.11-slim"
TENSORFLOW_IMAGE = "tensorflow/tensorflow:2.21.0"

# Installed at pod start; the ranges match pyproject.toml so tests run the same versions.
SERVER_PACKAGES = [
    "flask>=3.0,<4",
    "waitress>=3.0,<4",
    "numpy>=1.26,<3",
    "safetensors>=0.4.3,<0.9",
    "prometheus-client>=0.20,<1",
    # The outputs: per-client metrics table and the HTML report's plots.
    "pandas>=2.1,<3",
    "matplotlib>=3.8,<4",
    # Secure aggregation (contract.secagg): X25519, HKDF, AES-GCM, AES-CTR.
    "cryptography>=43,<51",
    # Differential privacy (contract.privacy): the RDP accountant.
    "dp-accounting>=0.6,<0.7",
]
# Experiment tracking (optional at run time, mlflow_tracking_uri): the client library only.
TRACKING_PACKAGES = ["mlflow-skinny>=3.5,<4"]
SERVER_PACKAGES += TRACKING_PACKAGES
SERVICE_PACKAGES = ["kubernetes>=30,<31"]
CLIENT_PACKAGES = [
    "requests>=2.31,<3",
    "safetensors>=0.4.3,<0.9",
    "scikit-learn>=1.4,<2",
    "cryptography>=43,<51",
    "dp-accounting>=0.6,<0.7",
    # Not in the TensorFlow image: the csv dataset reads with pandas, image folders with Pillow.
    "pandas>=2.1,<3",
    "pillow>=10,<13",
]
# The export task also logs model.keras into the run's MLflow run.
EXPORT_PACKAGES = CLIENT_PACKAGES + TRACKING_PACKAGES
