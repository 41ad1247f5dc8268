"""export-model: the registered Keras architecture plus the aggregator's final weights make
a .keras file that loads without this project and predicts like the federated model."""

import keras
import numpy as np
import pytest

from client_component.export import KERAS_FILE, ExportError, export_keras
from client_component.model import build_model
from client_component.model_config import ModelConfig
from contract import wire
from contract.file_names import FINAL_WEIGHTS, MODEL_ARCHITECTURE


def aggregator_outputs(directory, model, weights=None):
    directory.mkdir()
    (directory / MODEL_ARCHITECTURE).write_text(model.to_json())
    tensors = wire.tensors_from_list(weights or model.get_weights())
    (directory / FINAL_WEIGHTS).write_bytes(wire.encode(tensors, {wire.META_ROUND: "3"}))
    return directory


def test_the_exported_model_loads_and_predicts_like_the_final_weights(tmp_path):
    model = build_model((28, 28, 1), 2, "image", ModelConfig("cnn", 8, 2, "group"), seed=0)
    final = [w + 0.01 for w in model.get_weights()]  # "after federated training"
    source = aggregator_outputs(tmp_path / "final_model", model, final)
    metadata = export_keras(source, tmp_path / "keras_model")
    loaded = keras.models.load_model(tmp_path / "keras_model" / KERAS_FILE)
    model.set_weights(final)
    x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5)
    assert (tmp_path / "keras_model" / FINAL_WEIGHTS).read_bytes() == \
        (source / FINAL_WEIGHTS).read_bytes()
    assert metadata["parameters"] == model.count_params()
    assert metadata["keras_file"] == KERAS_FILE


def test_missing_or_mismatched_inputs_are_clear_errors(tmp_path):
    model = build_model((30,), 2, "table", ModelConfig("mlp"), seed=0)
    source = aggregator_outputs(tmp_path / "a", model, [np.zeros((3, 3), np.float32)])
    with pytest.raises(ExportError, match="do not fit the registered architecture"):
        export_keras(source, tmp_path / "out")
    (source / MODEL_ARCHITECTURE).unlink()
    with pytest.raises(ExportError, match=f"{MODEL_ARCHITECTURE} is missing"):
        export_keras(source, tmp_path / "out")


class Artifact:
    """What KFP hands a component for an artifact: a path and a metadata dict."""

    def __init__(self, path, metadata=None):
        self.path, self.metadata = str(path), dict(metadata or {})


def test_an_unreachable_mlflow_costs_the_export_one_line_not_the_model(tmp_path, capsys):
    from client_component.export import run_export_task
    from tests.support.live_aggregator import free_port

    model = build_model((30,), 2, "table", ModelConfig("mlp"), seed=0)
    source = Artifact(aggregator_outputs(tmp_path / "final_model", model),
                      {"mlflow_run_id": "0123456789abcdef", "rounds": 3})
    target = Artifact(tmp_path / "keras_model")
    run_export_task(source, target, f"http://127.0.0.1:{free_port()}")
    assert (tmp_path / "keras_model" / KERAS_FILE).is_file()
    assert target.metadata["rounds"] == 3 and "mlflow_model_uri" not in target.metadata
    lines = [line for line in capsys.readouterr().out.splitlines() if "MLflow" in line]
    assert len(lines) == 1 and lines[0].startswith("export: MLflow tracking unavailable (")
    assert lines[0].endswith("model.keras is in the KFP artifact only")


def test_without_tracking_the_export_never_touches_mlflow(tmp_path, capsys):
    from client_component.export import run_export_task

    model = build_model((30,), 2, "table", ModelConfig("mlp"), seed=0)
    source = Artifact(aggregator_outputs(tmp_path / "final_model", model))
    target = Artifact(tmp_path / "keras_model")
    run_export_task(source, target, "")
    assert (tmp_path / "keras_model" / KERAS_FILE).is_file()
    assert "MLflow" not in capsys.readouterr().out
