"""Multi-label data in its real layouts, from files the tests write: a ChestMNIST-layout npz
and a CheXpert-layout folder (PNGs + CSVs with 1/0/-1/blank), the uncertainty policies, the
`labels` choice, and label-skewed partitions of multi-label data."""

import numpy as np
import pandas as pd
import pytest

from bench.multilabel_files import write_chestmnist, write_chexpert
from client_component.datasets import DatasetError, load_dataset
from client_component.datasets.labels import MASKED, apply_uncertainty, partition_keys
from client_component.datasets.npz import CHESTMNIST_LABELS
from client_component.local_data import client_shard
from client_component.partition import partition_indices


@pytest.fixture(scope="module")
def chestmnist(tmp_path_factory):
    return write_chestmnist(tmp_path_factory.mktemp("npz") / "chestmnist.npz", train=200,
                            val=40, test=60)


@pytest.fixture(scope="module")
def chexpert(tmp_path_factory):
    return write_chexpert(tmp_path_factory.mktemp("chexpert") / "CheXpert-v1.0-small")


def test_a_chestmnist_file_has_fourteen_named_findings(chestmnist):
    data = load_dataset("npz", str(chestmnist))
    assert data.multi_label and data.num_classes == 14
    assert data.class_names == list(CHESTMNIST_LABELS)
    assert data.y_train.shape == (200, 14) and set(np.unique(data.y_train)) <= {0, 1}
    raw = np.load(chestmnist)
    np.testing.assert_array_equal(data.y_test, raw["test_labels"])
    assert data.x_val.shape == (40, 28, 28, 1)


def test_labels_choose_findings_by_name_in_the_order_given(chestmnist):
    data = load_dataset("npz", str(chestmnist), labels="Pneumonia, effusion")
    assert data.class_names == ["pneumonia", "effusion"] and data.num_classes == 2
    raw = np.load(chestmnist)["train_labels"]
    np.testing.assert_array_equal(data.y_train, raw[:, [6, 2]])
    assert data.multi_label  # two findings are still two sigmoid units, not a binary task


@pytest.mark.parametrize("labels, message", [
    ("pneumonia,cancer", r"labels \['cancer'\] are not in this dataset"),
    ("edema,Edema", "twice"),
])
def test_unknown_or_repeated_labels_are_refused(chestmnist, labels, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset("npz", str(chestmnist), labels=labels)


def test_a_multi_label_file_with_other_values_is_refused(tmp_path):
    path = write_chestmnist(tmp_path / "chestmnist.npz", train=20, val=5, test=10)
    arrays = dict(np.load(path))
    arrays["train_labels"][0, 0] = 2
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match="must be 0 or 1"):
        load_dataset("npz", str(path))


def test_labels_on_a_single_label_file_is_an_error(tmp_path):
    path = tmp_path / "pneumoniamnist.npz"
    images = np.zeros((4, 28, 28), np.uint8)
    np.savez(path, train_images=images, train_labels=np.array([[0], [1], [0], [1]]),
             test_images=images, test_labels=np.array([[0], [1], [1], [0]]))
    with pytest.raises(DatasetError, match="for multi-label files"):
        load_dataset("npz", str(path), labels="pneumonia")


def test_a_chexpert_folder_loads_the_competition_findings(chexpert):
    data = load_dataset("chexpert", str(chexpert), image_size=16)
    assert data.class_names == ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
                                "Pleural Effusion"]
    assert data.x_train.shape == (60, 16, 16, 1) and len(data.y_test) == 20  # valid.csv
    assert data.x_val is None  # the clients hold validation out of their train share
    first = data.x_train.paths[0]
    assert first.endswith("CheXpert-v1.0-small/train/patient00000/study1/view1_frontal.png")


@pytest.mark.parametrize("policy, uncertain_as", [("u_ones", 1), ("u_zeros", 0),
                                                  ("ignore", MASKED)])
def test_uncertain_mentions_follow_the_policy_and_blanks_are_negative(chexpert, policy,
                                                                      uncertain_as):
    data = load_dataset("chexpert", str(chexpert), labels="Edema", uncertainty=policy)
    raw = pd.read_csv(chexpert / "train.csv")["Edema"].to_numpy()
    assert (raw == -1).any() and np.isnan(raw).any()  # the file has both
    y = data.y_train[:, 0]
    assert (y[raw == -1] == uncertain_as).all()
    assert (y[np.isnan(raw)] == 0).all()
    assert (y[raw == 1] == 1).all() and (y[raw == 0] == 0).all()


def test_uncertainty_policy_and_values_are_checked():
    with pytest.raises(DatasetError, match="not one of u_ones, u_zeros, ignore"):
        apply_uncertainty(np.array([[1.0]]), "u_maybe")
    with pytest.raises(DatasetError, match=r"found \[2.0\]"):
        apply_uncertainty(np.array([[2.0]]), "u_ones")


def test_missing_images_are_skipped_and_a_missing_column_named(chexpert, tmp_path):
    frame = pd.read_csv(chexpert / "train.csv")
    (chexpert.parent / frame["Path"].iloc[0]).rename(tmp_path / "moved.png")
    try:
        data = load_dataset("chexpert", str(chexpert))
        assert len(data.y_train) == len(frame) - 1
    finally:
        (tmp_path / "moved.png").rename(chexpert.parent / frame["Path"].iloc[0])
    with pytest.raises(DatasetError, match="not in this dataset; it has No Finding"):
        load_dataset("chexpert", str(chexpert), labels="Fracture")


def test_without_valid_csv_a_fifth_of_the_patients_is_held_out(tmp_path):
    root = write_chexpert(tmp_path / "CheXpert-v1.0-small", train=40, valid=4)
    (root / "valid.csv").unlink()
    data = load_dataset("chexpert", str(root), labels="Edema,Cardiomegaly", seed=1)
    patients = [{p.split("/")[-3] for p in x.paths} for x in (data.x_train, data.x_test)]
    assert patients[0] and patients[1] and not patients[0] & patients[1]
    assert len(data.y_train) + len(data.y_test) == 40


def test_a_folder_without_train_csv_is_not_chexpert(tmp_path):
    with pytest.raises(DatasetError, match="no train.csv"):
        load_dataset("chexpert", str(tmp_path))


def test_partition_keys_are_the_rarest_present_finding_or_no_finding():
    y = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [1, 0, MASKED]])
    # positives per finding: 4, 2, 1 -> finding 2 is the rarest, then 1, then 0
    np.testing.assert_array_equal(partition_keys(y), [1, 0, 3, 2, 0])


def test_dirichlet_skew_on_multi_label_data_covers_every_example_once(chestmnist):
    data = load_dataset("npz", str(chestmnist))
    parts = partition_indices(partition_keys(data.y_train), 4, "dirichlet:0.3", seed=3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(200))
    again = partition_indices(partition_keys(data.y_train), 4, "dirichlet:0.3", seed=3)
    assert all((a == b).all() for a, b in zip(parts, again, strict=True))
    # label skew: the sites see findings in clearly different proportions
    shares = np.array([data.y_train[p].mean(axis=0) for p in parts])
    assert (shares.max(axis=0) - shares.min(axis=0)).max() > 0.2


def test_a_client_shard_of_multi_label_data_reports_positives_per_finding(chestmnist):
    data = load_dataset("npz", str(chestmnist), labels="nodule,mass,hernia")
    shard = client_shard(data, 1, 3, "dirichlet:0.5", seed=0)
    assert shard.multi_label and shard.label_names == ("nodule", "mass", "hernia")
    # the file has a val split, so the shard's train split is its whole partition
    assert shard.stats["examples"] == len(shard.y_train)
    assert shard.stats["labels"] == (shard.y_train == 1).sum(axis=0).tolist()


def test_a_site_holds_validation_out_by_patient(chexpert):
    data = load_dataset("chexpert", str(chexpert))  # no val split: each site holds one out
    for client in range(2):
        shard = client_shard(data, client, 2, "iid", seed=4)
        patients = [{p.split("/")[-3] for p in x.paths} for x in (shard.x_train, shard.x_val)]
        assert patients[0] and patients[1] and not patients[0] & patients[1]
        assert len(shard.y_train) + len(shard.y_val) == shard.stats["examples"]
        assert 0.1 < len(shard.y_val) / shard.stats["examples"] < 0.35
