import json
import struct

import numpy as np
import pytest

from server_component import wire
from server_component.errors import IncompatibleUpdate, MalformedRequest


def test_encode_decode_round_trip_keeps_tensors_and_metadata():
    tensors = {"w000": np.arange(6, dtype=np.float32).reshape(2, 3), "w001": np.ones(4, np.float16)}
    message = wire.decode(wire.encode(tensors, {"round": "3"}))
    assert message.metadata == {"round": "3"}
    assert set(message.tensors) == {"w000", "w001"}
    for name, array in tensors.items():
        np.testing.assert_array_equal(message.tensors[name], array)
        assert message.tensors[name].dtype == array.dtype


def test_body_is_binary_safetensors_not_json_floats():
    body = wire.encode({"w000": np.full(1000, 0.123456, np.float32)})
    (header_len,) = struct.unpack("<Q", body[:8])
    header = json.loads(body[8 : 8 + header_len])
    assert header["w000"]["dtype"] == "F32"
    assert len(body) - 8 - header_len == 4000  # raw float32 bytes
    assert b"0.123456" not in body


def test_weight_names_sort_in_model_order_beyond_1000_weights():
    names = wire.weight_names(1200)
    assert names[:2] == ["w0000", "w0001"]
    assert sorted(names) == names
    weights = [np.full(1, i, np.float32) for i in range(12)]
    restored = wire.tensors_to_list(wire.tensors_from_list(weights))
    assert [int(w[0]) for w in restored] == list(range(12))


@pytest.mark.parametrize(
    "body", [b"", b"\x00" * 4, b"\xff" * 16, b"\x02\x00\x00\x00\x00\x00\x00\x00{}"])
def test_garbage_is_malformed(body):
    with pytest.raises(MalformedRequest):
        wire.decode(body)


def test_update_meta_round_trip():
    meta = wire.UpdateMeta(client_id=2, round=5, num_examples=17, metrics={"auc": 0.9})
    assert wire.parse_update_meta(meta.to_metadata()) == meta


@pytest.mark.parametrize("metadata, error", [
    ({"round": "1", "num_examples": "3"}, MalformedRequest),
    ({"client_id": "x", "round": "1", "num_examples": "3"}, MalformedRequest),
    ({"client_id": "0", "round": "1"}, MalformedRequest),
    ({"client_id": "0", "round": "1", "num_examples": "0"}, IncompatibleUpdate),
    ({"client_id": "0", "round": "1", "num_examples": "-4"}, IncompatibleUpdate),
    ({"client_id": "0", "round": "1", "num_examples": "2.5"}, IncompatibleUpdate),
    ({"client_id": "0", "round": "1", "num_examples": "3", "metrics": "[1]"}, MalformedRequest),
    ({"client_id": "0", "round": "1", "num_examples": "3", "metrics": '{"a": "x"}'},
     MalformedRequest),
])
def test_bad_update_metadata_is_refused_with_the_right_error(metadata, error):
    with pytest.raises(error):
        wire.parse_update_meta(metadata)
