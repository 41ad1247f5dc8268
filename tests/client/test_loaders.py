"""Loaders on small files the tests generate: image folders, CSV tables, npz, downloads."""

import hashlib
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from client_component.datasets import DatasetError, ImageFiles, load_dataset
from client_component.datasets.image_folder import decode_images


def write_png(path, value, size=(12, 10), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 0, 255 - value)
    Image.new(mode, size, color).save(path)


@pytest.fixture
def chest_xray(tmp_path):
    """The Kaggle chest_xray layout: <root>/<split>/<class>/*.jpeg|png, plus junk."""
    root = tmp_path / "chest_xray"
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        for label, cls in enumerate(("NORMAL", "PNEUMONIA")):
            for i in range(n):
                write_png(root / split / cls / f"img{i}.png", 40 + 150 * label, mode="RGB")
    (root / "train" / "NORMAL" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "train" / "PNEUMONIA" / "notes.txt").write_text("not an image")
    (root / "train" / "PNEUMONIA" / "fake.jpg").write_text("plain text")
    return root


def test_image_folder_with_splits_skips_corrupt_files_and_counts_them(chest_xray, caplog):
    data = load_dataset("image_folder", str(chest_xray), image_size=8, channels=1)
    assert data.class_names == ["NORMAL", "PNEUMONIA"] and data.num_classes == 2
    assert isinstance(data.x_train, ImageFiles) and len(data.x_train) == 12
    assert len(data.y_val) == 4 and len(data.y_test) == 6
    assert "corrupt_or_not_images=2" in caplog.text
    images = decode_images(data.x_train[np.array([0, 11])])
    assert images.shape == (2, 8, 8, 1) and images.dtype == np.float32
    assert images[0].mean() < images[1].mean()  # the pneumonia images are brighter here


def test_image_folder_rgb_and_class_only_layout(tmp_path):
    for label, cls in enumerate(("a", "b")):
        for i in range(5):
            write_png(tmp_path / cls / f"{i}.jpg", 10 + 200 * label, mode="RGB")
    data = load_dataset("image_folder", str(tmp_path), image_size=16, channels=3, seed=1)
    assert data.input_shape == (16, 16, 3)
    assert len(data.y_train) + len(data.y_test) == 10
    assert set(data.y_test) == {0, 1}  # stratified


def test_image_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="data not found"):
        load_dataset("image_folder", str(tmp_path / "none"))
    (tmp_path / "only").mkdir()
    with pytest.raises(DatasetError, match="at least two class folders"):
        load_dataset("image_folder", str(tmp_path))


def test_csv_with_label_column_drops_bad_rows(tmp_path, caplog):
    csv = tmp_path / "t.csv"
    rows = ["age,creatinine,diagnosis"] + [f"{40 + i},{1.0 + i / 10},{'sick' if i % 2 else 'ok'}"
                                           for i in range(20)]
    rows += ["55,,ok", "61,abc,sick", "70,2.0,"]
    csv.write_text("\n".join(rows))
    data = load_dataset("csv", str(csv), label_column="diagnosis")
    assert data.class_names == ["ok", "sick"] and data.kind == "table"
    assert len(data.y_train) + len(data.y_test) == 20
    assert "bad_rows=3" in caplog.text


def test_csv_one_file_per_class_like_the_hemodialysis_sample(tmp_path):
    rng = np.random.default_rng(0)
    for name, shift in (("normal", 0.0), ("abnormal", 3.0)):
        np.savetxt(tmp_path / f"{name}.csv", rng.normal(shift, 1, (15, 17)), delimiter=",")
    data = load_dataset("csv", str(tmp_path))
    assert data.class_names == ["abnormal", "normal"]
    assert data.input_shape == (17,) and len(data.y_train) + len(data.y_test) == 30


def test_csv_errors_are_clear(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("site,value,label\nA,1,0\nB,2,1\nC,3,0\n")
    with pytest.raises(DatasetError, match=r"non-numeric feature columns \['site'\]"):
        load_dataset("csv", str(csv), label_column="label")
    with pytest.raises(DatasetError, match="needs --label-column"):
        load_dataset("csv", str(csv))
    with pytest.raises(DatasetError, match="no column 'y'"):
        load_dataset("csv", str(csv), label_column="y")


def test_npz_with_wrong_keys_or_not_an_npz(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 2)))
    with pytest.raises(DatasetError, match="missing keys"):
        load_dataset("npz", str(bad))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_dataset("npz", str(junk))


@pytest.fixture
def file_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    hits = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def test_http_data_is_downloaded_once_and_checksummed(file_server, tmp_path, monkeypatch):
    served, url, hits = file_server
    monkeypatch.setenv("FL_DATA_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    np.savez(served / "mini.npz", train_images=rng.integers(0, 255, (8, 6, 6), np.uint8),
             train_labels=np.array([[0], [1]] * 4), test_images=np.zeros((4, 6, 6), np.uint8),
             test_labels=np.array([[0], [1]] * 2))
    digest = hashlib.sha256((served / "mini.npz").read_bytes()).hexdigest()
    for _ in range(2):
        data = load_dataset("npz", f"{url}/mini.npz", sha256=digest)
        assert data.x_train.shape == (8, 6, 6, 1)
    assert hits == ["/mini.npz"]
    with pytest.raises(DatasetError, match="does not match the expected"):
        load_dataset("npz", f"{url}/mini.npz", sha256="0" * 64)
    with pytest.raises(DatasetError, match="cannot download"):
        load_dataset("npz", f"{url}/missing.npz")
