"""Client data: loaders, partitions and each client's local splits."""

import numpy as np
import pytest

from client_component.datasets import DatasetError, load_dataset, medmnist_npz
from client_component.local_data import client_shard
from client_component.partition import PartitionError, partition_indices
from tests.support.paths import SHARED_DATA


def test_breast_cancer_is_the_real_bundled_table():
    data = load_dataset("breast_cancer", seed=0)
    assert data.kind == "table" and data.num_classes == 2
    assert len(data.y_train) + len(data.y_test) == 569
    assert data.x_train.shape[1] == 30


def test_iid_partition_is_disjoint_complete_and_deterministic():
    parts = partition_indices(101, 5, "iid", seed=3)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(101))
    assert {len(p) for p in parts} == {20, 21}
    again = partition_indices(101, 5, "iid", seed=3)
    assert all((a == b).all() for a, b in zip(parts, again, strict=True))
    other = partition_indices(101, 5, "iid", seed=4)
    assert any((a != b).any() for a, b in zip(parts, other, strict=True))


@pytest.mark.parametrize("args, message", [
    ((10, 0, "iid"), "num_clients must be at least 1"),
    ((3, 5, "iid"), "cannot give each of 5 clients"),
    ((10, 2, "zipf"), "unknown partition 'zipf'; accepted: iid, dirichlet"),
    ((10, 2, "dirichlet:0"), "dirichlet needs a positive number"),
    ((10, 2, "quantity:x"), "quantity needs a positive number"),
])
def test_bad_partitions_say_why(args, message):
    with pytest.raises(PartitionError, match=message):
        partition_indices(*args)


def test_client_shards_do_not_overlap_and_tables_are_standardised_locally():
    data = load_dataset("breast_cancer", seed=0)
    shards = [client_shard(data, cid, 3, "iid", seed=0) for cid in range(3)]
    total = sum(len(s.y_train) + len(s.y_val) for s in shards)
    assert total == len(data.y_train)
    assert sum(len(s.y_test) for s in shards) == len(data.y_test)
    np.testing.assert_allclose(shards[0].x_train.mean(axis=0), 0, atol=1e-4)
    assert shards[0].input_shape == (30,)


def test_unknown_dataset_and_missing_file_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(DatasetError, match="data not found"):
        load_dataset("npz", str(tmp_path / "nope.npz"))
    with pytest.raises(DatasetError, match="needs data_uri"):
        load_dataset("npz", "")
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 2)))
    with pytest.raises(DatasetError, match="missing keys"):
        medmnist_npz(str(bad))


def test_pneumoniamnist_loads_when_the_shared_data_is_there():
    path = SHARED_DATA / "pneumoniamnist.npz"
    if not path.exists():
        pytest.skip(f"{path} absent: the shared data set is not on this machine")
    data = medmnist_npz(str(path))
    assert data.x_train.shape == (3882, 28, 28, 1) and data.num_classes == 2
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
