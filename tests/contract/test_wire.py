import io
import json
import struct

import numpy as np
import pytest
from safetensors.numpy import load as safetensors_load
from safetensors.numpy import save as safetensors_save

from contract import wire
from contract.errors import IncompatibleUpdate, MalformedRequest
from contract.safetensors_io import FormatError


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
    with pytest.raises(FormatError):
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


def _sample_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"conv/kernel": rng.standard_normal((3, 3, 2, 4)).astype(np.float32),
            "bias": rng.standard_normal(5).astype(np.float64),
            "half": rng.standard_normal((2, 7)).astype(np.float16),
            "empty": np.zeros((0, 3), np.float32),
            "count": np.arange(3, dtype=np.int64)}


def test_our_bytes_read_back_with_the_safetensors_library():
    tensors = _sample_tensors()
    loaded = safetensors_load(wire.encode(tensors, {"round": "2"}))
    assert set(loaded) == set(tensors)
    for name, array in tensors.items():
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].dtype == array.dtype


def test_the_safetensors_library_bytes_decode_as_views():
    tensors = _sample_tensors()
    body = safetensors_save(tensors, metadata={"round": "2"})
    message = wire.decode(body)
    assert message.metadata == {"round": "2"}
    for name, array in tensors.items():
        np.testing.assert_array_equal(message.tensors[name], array)
        assert message.tensors[name].dtype == array.dtype
        assert not message.tensors[name].flags.writeable


def test_decode_copies_no_tensor_bytes():
    body = bytearray(wire.encode({"w000": np.ones(1000, np.float32)}))
    view = wire.decode(body).tensors["w000"]
    assert np.shares_memory(view, np.frombuffer(body, np.uint8))


def test_write_streams_the_same_bytes_as_encode(tmp_path):
    tensors = _sample_tensors()
    with open(tmp_path / "m.safetensors", "wb") as handle:
        size = wire.write(handle, tensors, {"a": "b"})
    assert (tmp_path / "m.safetensors").read_bytes() == wire.encode(tensors, {"a": "b"})
    assert size == len(wire.encode(tensors, {"a": "b"}))


def _with_header(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.mark.parametrize("header, data, detail", [
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 12, "describes 8"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4, "need 8"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "gap"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "overlap"),
    ({"a": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}}, b"\0" * 2, "dtype"),
    ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "non-negative"),
    ({"a": {"dtype": "F32", "shape": [1]}}, b"\0" * 4, "needs dtype, shape and data_offsets"),
    ({"__metadata__": {"round": 1}, "a": {"dtype": "F32", "shape": [1],
                                         "data_offsets": [0, 4]}}, b"\0" * 4, "strings"),
])
def test_inconsistent_headers_are_malformed(header, data, detail):
    with pytest.raises(FormatError, match=detail):
        wire.decode(_with_header(header, data))
    with pytest.raises(Exception):  # noqa: B017 - the reference parser refuses them too
        safetensors_load(_with_header(header, data))


def _from_chunks(message) -> dict[str, np.ndarray]:
    out = {name: np.empty(int(np.prod(shape)), dtype) for name, (shape, dtype)
           in message.layout.items()}
    for name, start, values in message.chunks():
        out[name][start:start + values.size] = values
    return {name: out[name].reshape(message.layout[name][0]) for name in out}


def test_a_streamed_body_reads_as_the_decoded_one_in_chunks():
    big = np.random.default_rng(2).standard_normal(wire.CHUNK_BYTES // 4 * 2 + 3)
    tensors = {**_sample_tensors(), "big": big.astype(np.float32)}
    body = safetensors_save(tensors, metadata={"round": "1"})  # the library's data order
    streamed = wire.StreamedMessage(io.BytesIO(body), len(body))
    assert streamed.metadata == {"round": "1"}
    for _ in range(2):  # the aggregator reads an update twice: check, then fold
        restored = _from_chunks(streamed)
        for name, array in tensors.items():
            np.testing.assert_array_equal(restored[name], array)
    ours = wire.encode(tensors, {"round": "1"})
    assert wire.content_digest(streamed) == wire.content_digest(wire.decode(body)) \
        == wire.content_digest(wire.decode(ours))
    assert wire.content_digest(wire.decode(wire.encode(tensors, {"round": "2"}))) != \
        wire.content_digest(streamed)


def test_a_streamed_body_shorter_than_its_length_is_malformed():
    body = wire.encode({"w000": np.ones(1000, np.float32)})
    streamed = wire.StreamedMessage(io.BytesIO(body[:-10]), len(body))
    with pytest.raises(FormatError, match="ended after"):
        list(streamed.chunks())


def test_encoded_parts_are_the_encoded_body_in_pieces():
    tensors = _sample_tensors()
    parts = wire.EncodedParts(tensors, {"round": "4"})
    whole = wire.encode(tensors, {"round": "4"})
    assert len(parts) == len(whole)
    assert bytes(parts) == whole == b"".join(parts) == b"".join(parts)  # iterable twice


def test_init_metadata_round_trips_and_only_the_client_id_is_required():
    meta = wire.InitMeta(3, {"examples": 10, "labels": [4, 6]}, {"dataset": "npz"}, '{"k": 1}')
    assert wire.parse_init_meta(meta.to_metadata()) == meta
    assert wire.parse_init_meta({"client_id": "2"}) == wire.InitMeta(2)
    assert wire.InitMeta(2).to_metadata() == {"client_id": "2"}


@pytest.mark.parametrize("metadata", [{}, {"client_id": "x"}, {"client_id": "1", "partition": "[]"},
                                      {"client_id": "1", "settings": "{not json"},
                                      {"client_id": "1", "architecture": "x" * (5 << 20)}])
def test_a_malformed_init_is_a_400(metadata):
    with pytest.raises(MalformedRequest):
        wire.parse_init_meta(metadata)
