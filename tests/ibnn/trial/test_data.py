"""Datasets: offline Fashion-MNIST, SVHN / CIFAR-10 in torchvision's format, toy2d, splits."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision.datasets as tvd

from ibnn.trial import data
from ibnn.trial.data import DATASETS, DatasetNotFoundError, RawData, load_raw, make_splits
from ibnn.trial.toy2d import _in_arrow, arrow_label, toy2d


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------- toy2d


def test_toy2d_is_seeded_balanced_and_inside_the_arrow_masks():
    x, y = toy2d(1000, seed=3)
    assert x.shape == (1000, 2) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert int((y == 0).sum()) == 500 and int((y == 1).sum()) == 500
    assert np.array_equal(arrow_label(x.numpy()), y.numpy())  # accept-reject: every point fits
    x2, y2 = toy2d(1000, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, toy2d(1000, seed=4)[0])


def test_toy2d_boundary_is_not_convex():
    """Class 1 reaches into the convex hull of class 0: midpoints of class-0 pairs land in it."""
    x, y = toy2d(2000, seed=0)
    inner = x[y == 0][:300].numpy()
    mid = (inner[:, None, :] + inner[None, :, :]) / 2
    labels = arrow_label(mid.reshape(-1, 2))
    assert (labels == 1).mean() > 0.002  # a convex class-0 region would give exactly 0
    # the classes are separated by a margin: no class-1 point inside the inner arrow scaled 1.3x
    assert not _in_arrow(x[y == 1].numpy(), 0.65).any()


def test_load_raw_toy2d_is_one_fixed_dataset():
    a, b = load_raw("toy2d", "/nonexistent"), load_raw("toy2d", "/elsewhere")
    assert torch.equal(a.x_train, b.x_train) and a.x_train.shape == (2000, 2)
    assert a.x_test.shape == (2000, 2) and not torch.equal(a.x_train, a.x_test)


# ------------------------------------------------------------------------------- errors


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'.*cifar10.*fmnist"):
        load_raw("mnist", "/tmp")


@pytest.mark.parametrize(
    ("name", "looked"),
    [("svhn", "train_32x32.mat"), ("cifar10", "cifar-10-batches-py"), ("fmnist", "FashionMNIST")],
)
def test_missing_dataset_says_where_it_looked_and_how_to_get_it(
    name, looked, tmp_path, monkeypatch
):
    monkeypatch.setattr(data, "DEBIAN_FMNIST_DIR", tmp_path / "no-debian-package")
    with pytest.raises(DatasetNotFoundError) as info:
        load_raw(name, tmp_path / "root")
    msg = str(info.value)
    assert str(tmp_path / "root") in msg and looked in msg
    assert "To get it" in msg and f"python -m ibnn.trial.data {name}" in msg


# ------------------------------------------------------------------------------- Fashion-MNIST


def test_fmnist_found_offline_in_the_debian_files(tmp_path):
    raw = load_raw("fmnist", tmp_path)
    assert raw.x_train.shape == (60000, 1, 28, 28) and raw.x_test.shape == (10000, 1, 28, 28)
    assert raw.x_train.dtype == torch.uint8 and int(raw.x_train.max()) == 255
    assert sorted(raw.y_train.unique().tolist()) == list(range(10))
    assert torch.bincount(raw.y_test).tolist() == [1000] * 10  # the real test set is balanced
    for f in data._FMNIST_FILES:  # un-gzipped where torchvision wants them
        assert (tmp_path / "FashionMNIST" / "raw" / f).is_file()
    assert not list((tmp_path / "FashionMNIST" / "raw").glob(".*tmp"))  # no temp files left


# ------------------------------------------------------------------------------- SVHN


def _write_svhn(root: Path, n_train: int, n_test: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        X = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)  # SVHN: (H, W, C, N)
        y = rng.integers(1, 11, size=(n, 1)).astype(np.uint8)  # 1..10, 10 is the digit 0
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": X, "y": y})
        out[split + "_X"], out[split + "_y"] = X, y
    return out


def test_svhn_loader_reads_torchvision_files_with_integrity_check(tmp_path, monkeypatch):
    arrays = _write_svhn(tmp_path, 40, 12)
    split_list = {k: list(v) for k, v in tvd.SVHN.split_list.items()}
    for split in ("train", "test"):  # the real md5 check runs, against our small files
        split_list[split][2] = _md5(tmp_path / f"{split}_32x32.mat")
    monkeypatch.setattr(tvd.SVHN, "split_list", split_list)
    raw = load_raw("svhn", tmp_path)
    assert raw.x_train.shape == (40, 3, 32, 32) and raw.x_test.shape == (12, 3, 32, 32)
    X, y = arrays["train_X"], arrays["train_y"][:, 0]
    assert int(raw.x_train[5, 2, 7, 9]) == int(X[7, 9, 2, 5])  # (H, W, C, N) -> (N, C, H, W)
    assert raw.y_train.tolist() == [0 if v == 10 else int(v) for v in y]  # label 10 -> digit 0
    (tmp_path / "test_32x32.mat").write_bytes(b"corrupted")
    with pytest.raises(DatasetNotFoundError, match="corrupted"):  # the check is not bypassed
        load_raw("svhn", tmp_path)


# ------------------------------------------------------------------------------- CIFAR-10


def _write_cifar(root: Path, per_batch: int) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    out = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        flat = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)  # R, G, B planes
        labels = rng.integers(0, 10, size=per_batch).tolist()
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": flat, "labels": labels}, fh)
        out[name] = flat
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    return out


def test_cifar10_loader_reads_torchvision_pickles_with_integrity_check(tmp_path, monkeypatch):
    arrays = _write_cifar(tmp_path, per_batch=6)
    folder = tmp_path / "cifar-10-batches-py"
    monkeypatch.setattr(
        tvd.CIFAR10,
        "train_list",
        [[f"data_batch_{i}", _md5(folder / f"data_batch_{i}")] for i in range(1, 6)],
    )
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", _md5(folder / "test_batch")]])
    meta = dict(tvd.CIFAR10.meta, md5=_md5(folder / "batches.meta"))
    monkeypatch.setattr(tvd.CIFAR10, "meta", meta)
    raw = load_raw("cifar10", tmp_path)
    assert raw.x_train.shape == (30, 3, 32, 32) and raw.x_test.shape == (6, 3, 32, 32)
    flat = arrays["data_batch_2"]  # sample 8 = batch 2, row 2; channel 1 plane, pixel (4, 5)
    assert int(raw.x_train[8, 1, 4, 5]) == int(flat[2, 1024 + 4 * 32 + 5])
    (folder / "data_batch_3").write_bytes(b"corrupted")
    with pytest.raises(DatasetNotFoundError, match="data_root"):
        load_raw("cifar10", tmp_path)


# ------------------------------------------------------------------------------- splits


def _synthetic(n_train: int = 5000, n_test: int = 700) -> RawData:
    g = torch.Generator().manual_seed(0)
    spec = DATASETS["fmnist"]
    return RawData(
        spec,
        torch.randint(0, 256, (n_train, 1, 4, 4), generator=g, dtype=torch.uint8),
        torch.randint(0, 10, (n_train,), generator=g),
        torch.randint(0, 256, (n_test, 1, 4, 4), generator=g, dtype=torch.uint8),
        torch.randint(0, 10, (n_test,), generator=g),
    )


def test_train_fraction_gives_nested_subsets_for_a_seed():
    raw = _synthetic()
    small, large = make_splits(raw, 7, 0.2), make_splits(raw, 7, 0.5)
    assert len(small.train_index) == round(0.2 * 4500) and len(large.train_index) == 2250
    assert set(small.train_index.tolist()) <= set(large.train_index.tolist())
    assert torch.equal(small.val_index, large.val_index)  # validation does not move
    other = make_splits(raw, 8, 0.2)
    assert set(other.train_index.tolist()) != set(small.train_index.tolist())
    # a cap applies to the pool before the fraction: fractions stay fractions under a cap,
    # nested as before
    full, half, tenth = (make_splits(raw, 7, f, max_train=100) for f in (1.0, 0.5, 0.1))
    assert (len(full.train_index), len(half.train_index), len(tenth.train_index)) == (100, 50, 10)
    assert torch.equal(full.train_index, large.train_index[:100])
    assert torch.equal(half.train_index, full.train_index[:50])
    assert torch.equal(tenth.train_index, full.train_index[:10])


def test_validation_comes_from_the_training_set_never_the_test_set():
    raw = _synthetic()
    s = make_splits(raw, 1, 1.0, val_fraction=0.1)
    assert len(s.val_index) == 500 and len(s.train_index) == 4500
    assert not set(s.val_index.tolist()) & set(s.train_index.tolist())
    assert torch.equal(s.x_val, raw.x_train[s.val_index])
    assert torch.equal(s.y_val, raw.y_train[s.val_index])
    assert torch.equal(s.x_test, raw.x_test) and torch.equal(s.y_test, raw.y_test)
    capped = make_splits(raw, 1, max_test=100)
    assert torch.equal(capped.x_test, raw.x_test[capped.test_index]) and len(capped.y_test) == 100


def test_a_validation_cap_keeps_a_prefix_of_the_split_and_the_training_set():
    raw = _synthetic()
    full = make_splits(raw, 3, 0.5, val_fraction=0.1)
    capped = make_splits(raw, 3, 0.5, val_fraction=0.1, max_val=40)
    assert torch.equal(capped.val_index, full.val_index[:40]) and len(capped.y_val) == 40
    assert torch.equal(capped.train_index, full.train_index)  # training does not move
    assert torch.equal(capped.x_val, raw.x_train[capped.val_index])


def test_label_noise_moves_exactly_that_fraction_to_uniform_other_classes():
    raw = _synthetic(20000)
    s = make_splits(raw, 2, 1.0, label_noise=0.3)
    moved = s.y_train != s.y_train_clean
    assert int(moved.sum()) == round(0.3 * len(s.y_train))
    assert torch.equal(s.y_train_clean, raw.y_train[s.train_index])
    assert torch.equal(s.y_val, raw.y_train[s.val_index])  # validation stays clean
    shift = ((s.y_train - s.y_train_clean) % 10)[moved]
    counts = torch.bincount(shift, minlength=10)
    assert counts[0] == 0
    expected = int(moved.sum()) / 9
    assert ((counts[1:] - expected).abs() < 0.1 * expected).all(), counts
    assert int((make_splits(raw, 2, 1.0, label_noise=1.0).y_train == s.y_train_clean).sum()) == 0


@pytest.mark.parametrize(
    ("kw", "rule"),
    [
        ({"train_fraction": 0.0}, r"train_fraction must lie in \(0, 1\], got 0.0"),
        ({"label_noise": 1.5}, r"label_noise must lie in \[0, 1\], got 1.5"),
        ({"val_fraction": 1.0}, r"val_fraction must lie in \(0, 1\), got 1.0"),
    ],
)
def test_make_splits_refuses_bad_fractions(kw, rule):
    with pytest.raises(ValueError, match=rule):
        make_splits(_synthetic(100, 10), 0, **kw)
