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
