"""Dataset loaders, one small module each, all returning the same in-memory form
(``client_component.datasets.base.Dataset``). ``load_dataset`` picks one by name."""

from __future__ import annotations

from client_component.datasets.base import Dataset, DatasetError, ImageFiles
from client_component.datasets.breast_cancer import breast_cancer
from client_component.datasets.chexpert import chexpert
from client_component.datasets.csv_table import csv_table
from client_component.datasets.image_folder import image_folder
from client_component.datasets.npz import medmnist_npz
from client_component.datasets.remote import resolve_uri
from client_component.datasets.synthetic import synthetic_images

DATASETS = ("breast_cancer", "npz", "image_folder", "csv", "chexpert", "synthetic")

__all__ = ["DATASETS", "Dataset", "DatasetError", "ImageFiles", "load_dataset",
           "medmnist_npz"]


def load_dataset(name: str, data_uri: str = "", seed: int = 0, *, label_column: str = "",
                 image_size: int = 28, channels: int = 1, sha256: str = "", labels: str = "",
                 uncertainty: str = "u_ones") -> Dataset:
    """Load ``name`` from ``data_uri`` (a path, a mounted volume or an http(s) URL);
    ``labels`` and ``uncertainty`` choose the findings of a multi-label dataset."""
    if name == "breast_cancer":
        return breast_cancer(seed)
    if name == "synthetic":
        return synthetic_images(seed)
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if not data_uri:
        raise DatasetError(f"dataset {name!r} needs data_uri (a path or an http(s) URL)")
    path = resolve_uri(data_uri, sha256)
    if name == "npz":
        return medmnist_npz(path, labels)
    if name == "chexpert":
        return chexpert(path, labels, uncertainty, image_size=image_size, channels=channels,
                        seed=seed)
    if name == "image_folder":
        return image_folder(path, image_size=image_size, channels=channels, seed=seed)
    return csv_table(path, label_column=label_column, seed=seed)
