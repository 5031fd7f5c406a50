"""Datasets for trials: Fashion-MNIST, SVHN, CIFAR-10 (torchvision) and the toy 2-D arrows.

Images are loaded once through torchvision's dataset classes and kept as ``uint8`` tensors
``(N, C, H, W)``; :func:`as_float` scales a batch to ``[0, 1]`` (no input normalisation, as in
the authors' code). Fashion-MNIST is found offline in Debian's ``dataset-fashion-mnist`` files when
present. The toy set is generated (Fig. 2: two concentric arrows, accept-reject sampling).

:func:`make_splits` carves the validation split out of the training set (never the test set),
then draws nested training subsets (``train_fraction``) and label noise, all seeded.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ibnn.trial.toy2d import toy2d
from ibnn.vocab import NUM_CLASSES

__all__ = [
    "DATASETS",
    "DATASET_FILES",
    "DEBIAN_FMNIST_DIR",
    "DatasetNotFoundError",
    "DatasetSpec",
    "RawData",
    "Splits",
    "as_float",
    "load_raw",
    "make_splits",
]

DEBIAN_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_FMNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# Streams of the split generator (numpy SeedSequence entropy [seed, stream]).
_VAL_STREAM, _SUBSET_STREAM, _NOISE_STREAM, _TEST_STREAM = 1, 2, 3, 4
_TOY_SIZES = (2000, 2000)  # (train, test) samples of the generated toy set
_TOY_DATA_SEED = 20240601  # the toy set is one fixed dataset, like the image datasets


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not under the data root (the message says where and how to fix)."""


@dataclass(frozen=True)
class DatasetSpec:
    """Static facts about one dataset."""

    name: str  # registry name ("fmnist", ...)
    in_channels: int  # image channels (0 for the 2-D toy set)
    image_size: int  # image side in pixels (0 for the 2-D toy set)
    num_classes: int  # number of labels
    default_L: int  # paper's central UCN(L, C) depth (toy2d: 1 hidden layer)
    default_C: int  # paper's central UCN(L, C) channels (toy2d: hidden units)
    how_to_get: str  # where the files come from, for error messages


DATASETS: dict[str, DatasetSpec] = {
    "fmnist": DatasetSpec(
        *("fmnist", 1, 28, NUM_CLASSES["fmnist"], 1, 3),
        "install Debian's package dataset-fashion-mnist (files in /usr/share/datasets/"
        "fashion-mnist), or download it: python -m ibnn.trial.data fmnist --data-root ROOT",
    ),
    "svhn": DatasetSpec(
        *("svhn", 3, 32, NUM_CLASSES["svhn"], 2, 3),
        "download it where the network allows: python -m ibnn.trial.data svhn --data-root ROOT "
        "(torchvision fetches http://ufldl.stanford.edu/housenumbers/train_32x32.mat and "
        "test_32x32.mat), or copy those two files into ROOT",
    ),
    "cifar10": DatasetSpec(
        *("cifar10", 3, 32, NUM_CLASSES["cifar10"], 3, 8),
        "download it where the network allows: python -m ibnn.trial.data cifar10 --data-root ROOT "
        "(torchvision fetches https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz), or "
        "unpack that archive into ROOT (giving ROOT/cifar-10-batches-py/)",
    ),
    "toy2d": DatasetSpec("toy2d", 0, 0, NUM_CLASSES["toy2d"], 1, 3, "generated, no files needed"),
}
if set(DATASETS) != set(NUM_CLASSES):
    raise ImportError(f"DATASETS {sorted(DATASETS)} must match ibnn.vocab.NUM_CLASSES")


@dataclass(frozen=True)
class RawData:
    """A dataset's full train and test sets as tensors.

    Images: ``x`` is ``uint8`` of shape ``(N, C, H, W)``; toy2d: ``float32`` of shape ``(N, 2)``.
    Labels ``y`` are ``int64`` of shape ``(N,)``.
    """

    spec: DatasetSpec  # which dataset
    x_train: torch.Tensor  # (N_train, ...) training inputs
    y_train: torch.Tensor  # (N_train,) training labels
    x_test: torch.Tensor  # (N_test, ...) test inputs
    y_test: torch.Tensor  # (N_test,) test labels


@dataclass(frozen=True)
class Splits:
    """Seeded train / validation / test split of one dataset (inputs as stored, see as_float)."""

    spec: DatasetSpec  # which dataset
    x_train: torch.Tensor  # (n_train, ...) training subset
    y_train: torch.Tensor  # (n_train,) its labels, after label noise
    y_train_clean: torch.Tensor  # (n_train,) its labels before label noise
    x_val: torch.Tensor  # (n_val, ...) validation split, carved from the training set
    y_val: torch.Tensor  # (n_val,) clean validation labels
    x_test: torch.Tensor  # (n_test, ...) test set (all of it unless capped)
    y_test: torch.Tensor  # (n_test,) test labels
    train_index: torch.Tensor  # (n_train,) rows of RawData.x_train used for training
    val_index: torch.Tensor  # (n_val,) rows of RawData.x_train used for validation
    test_index: torch.Tensor  # (n_test,) rows of RawData.x_test used as test set

    def to(self, device: torch.device | str) -> Splits:
        """Returns a copy with every tensor moved to ``device``."""
        moved = {
            k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()
        }
        return Splits(**moved)


def as_float(x: torch.Tensor) -> torch.Tensor:
    """Scales stored inputs to float: ``uint8`` images to ``[0, 1]``, floats unchanged."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x


# ----------------------------------------------------------------------------- image sets


def _not_found(spec: DatasetSpec, root: Path, looked: list[Path], why: str) -> DatasetNotFoundError:
    where = ", ".join(str(p) for p in looked)
    return DatasetNotFoundError(
        f"dataset {spec.name!r} not found under data_root={str(root)!r} (looked for {where}; "
        f"{why}). To get it: {spec.how_to_get}."
    )


def _install_debian_fmnist(root: Path) -> None:
    """Un-gzips Debian's Fashion-MNIST files into ``root/FashionMNIST/raw`` if they are missing."""
    raw = root / "FashionMNIST" / "raw"
    if all((raw / f).is_file() for f in _FMNIST_FILES):
        return
    if not all((DEBIAN_FMNIST_DIR / f"{f}.gz").is_file() for f in _FMNIST_FILES):
        return
    raw.mkdir(parents=True, exist_ok=True)
    for f in _FMNIST_FILES:
        if (raw / f).is_file():
            continue
        tmp = raw / f".{f}.{os.getpid()}.tmp"
        with gzip.open(DEBIAN_FMNIST_DIR / f"{f}.gz", "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, raw / f)  # atomic: concurrent trials never see half a file


def _load_fmnist(root: Path, download: bool) -> tuple[np.ndarray, ...]:
    from torchvision.datasets import FashionMNIST

    _install_debian_fmnist(root)
    try:
        tr = FashionMNIST(str(root), train=True, download=download)
        te = FashionMNIST(str(root), train=False, download=download)
    except RuntimeError as err:
        raw = root / "FashionMNIST" / "raw"
        looked = [raw / f for f in _FMNIST_FILES] + [DEBIAN_FMNIST_DIR / "*.gz"]
        raise _not_found(DATASETS["fmnist"], root, looked, str(err)) from None
    return (
        tr.data[:, None].numpy(),
        tr.targets.numpy(),
        te.data[:, None].numpy(),
        te.targets.numpy(),
    )


def _load_svhn(root: Path, download: bool) -> tuple[np.ndarray, ...]:
    from torchvision.datasets import SVHN

    try:
        tr = SVHN(str(root), split="train", download=download)
        te = SVHN(str(root), split="test", download=download)
    except (RuntimeError, OSError) as err:
        looked = [root / "train_32x32.mat", root / "test_32x32.mat"]
        raise _not_found(DATASETS["svhn"], root, looked, str(err)) from None
    return tr.data, tr.labels, te.data, te.labels


def _load_cifar10(root: Path, download: bool) -> tuple[np.ndarray, ...]:
    from torchvision.datasets import CIFAR10

    try:
        tr = CIFAR10(str(root), train=True, download=download)
        te = CIFAR10(str(root), train=False, download=download)
    except (RuntimeError, OSError) as err:
        looked = [root / "cifar-10-batches-py" / "{data_batch_1..5,test_batch,batches.meta}"]
        raise _not_found(DATASETS["cifar10"], root, looked, str(err)) from None
    to_chw = (0, 3, 1, 2)  # torchvision keeps CIFAR as (N, H, W, C)
    return (
        tr.data.transpose(to_chw),
        np.asarray(tr.targets),
        te.data.transpose(to_chw),
        np.asarray(te.targets),
    )


_LOADERS = {"fmnist": _load_fmnist, "svhn": _load_svhn, "cifar10": _load_cifar10}
# The files under the data root that load_raw reads, per dataset (what a cluster sweep stages to
# its nodes: ibnn.sweep.cluster.datastage).
DATASET_FILES: dict[str, tuple[str, ...]] = {
    "fmnist": tuple(f"FashionMNIST/raw/{f}" for f in _FMNIST_FILES),
    "svhn": ("train_32x32.mat", "test_32x32.mat"),
    "cifar10": tuple(
        f"cifar-10-batches-py/{f}"
        for f in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
    ),
    "toy2d": (),
}


def load_raw(name: str, data_root: str | os.PathLike[str], download: bool = False) -> RawData:
    """Loads a dataset's full train and test sets.

    Args:
        name: one of ``DATASETS``.
        data_root: folder holding torchvision's files (``~`` is expanded).
        download: let torchvision download missing files (needs network access).

    Returns:
        The dataset as tensors (images ``uint8 (N, C, H, W)``, toy2d ``float32 (N, 2)``).

    Raises:
        ValueError: unknown dataset name.
        DatasetNotFoundError: files missing; the message says where it looked and how to get them.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {sorted(DATASETS)}")
    spec = DATASETS[name]
    if name == "toy2d":
        n_train, n_test = _TOY_SIZES
        x, y = toy2d(n_train + n_test, _TOY_DATA_SEED)
        return RawData(spec, x[:n_train], y[:n_train], x[n_train:], y[n_train:])
    root = Path(data_root).expanduser()
    xtr, ytr, xte, yte = _LOADERS[name](root, download)

    def tensor(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)

    return RawData(
        spec,
        tensor(xtr, torch.uint8),
        tensor(ytr, torch.int64),
        tensor(xte, torch.uint8),
        tensor(yte, torch.int64),
    )


# ----------------------------------------------------------------------------- splits


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def make_splits(
    raw: RawData,
    seed: int,
    train_fraction: float = 1.0,
    label_noise: float = 0.0,
    val_fraction: float = 0.1,
    max_train: int | None = None,
    max_test: int | None = None,
    max_val: int | None = None,
) -> Splits:
    """Seeded validation split, nested training subset, label noise and optional caps.

    The validation split is ``round(val_fraction * N_train)`` rows of the training set, drawn
    first; the rest is the pool. ``max_val`` keeps only the first ``max_val`` of those rows
    (the pool, so the training set, does not change). The training subset is the first
    ``round(train_fraction * min(pool, max_train))`` rows of one seeded permutation of
    the pool, so for a fixed seed a smaller fraction is a subset of a larger one. Label noise
    moves exactly ``round(label_noise * n_train)`` training labels, each to a class drawn
    uniformly among the other classes; validation and test labels stay clean.

    Args:
        raw: the full dataset.
        seed: seed of the split (validation rows, subset order, noise).
        train_fraction: fraction of the pool used for training, in (0, 1].
        label_noise: fraction of training labels moved to another class, in [0, 1].
        val_fraction: fraction of the training set held out for validation, in (0, 1).
        max_train: optional cap on the training pool, applied before ``train_fraction`` (a
            fraction of a capped trial is that fraction of ``max_train`` images).
        max_test: optional cap on the number of test samples (seeded choice).
        max_val: optional cap on the number of validation samples (a prefix of the seeded
            validation rows).

    Returns:
        The splits (tensors on the CPU).
    """
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train_fraction must lie in (0, 1], got {train_fraction}")
    if not 0.0 <= label_noise <= 1.0:
        raise ValueError(f"label_noise must lie in [0, 1], got {label_noise}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    n = len(raw.y_train)
    n_val = max(1, round(val_fraction * n))
    perm = _rng(seed, _VAL_STREAM).permutation(n)
    val_index, pool = perm[:n_val][:max_val], np.sort(perm[n_val:])
    order = pool[_rng(seed, _SUBSET_STREAM).permutation(len(pool))]
    # max_train caps the pool before the fraction is taken, so fractions stay fractions of
    # what a capped trial could use (a 0.1 and a 1.0 trial differ tenfold under any cap).
    available = len(pool) if max_train is None else min(len(pool), max_train)
    n_train = max(1, round(train_fraction * available))
    train_index = order[:n_train]
    y_clean = raw.y_train[train_index]
    y_noisy = y_clean.clone()
    n_noisy = round(label_noise * n_train)
    if n_noisy:
        noise_rng = _rng(seed, _NOISE_STREAM)
        moved = noise_rng.choice(n_train, size=n_noisy, replace=False)
        k = raw.spec.num_classes
        shift = noise_rng.integers(1, k, size=n_noisy)  # 1..k-1: never the same class
        y_noisy[moved] = (y_clean[moved] + torch.from_numpy(shift)) % k
    n_test = len(raw.y_test)
    if max_test is not None and max_test < n_test:
        test_index = np.sort(_rng(seed, _TEST_STREAM).choice(n_test, size=max_test, replace=False))
    else:
        test_index = np.arange(n_test)
    ti, vi, si = (
        torch.from_numpy(a.astype(np.int64)) for a in (train_index, val_index, test_index)
    )
    return Splits(
        spec=raw.spec,
        x_train=raw.x_train[ti],
        y_train=y_noisy,
        y_train_clean=y_clean,
        x_val=raw.x_train[vi],
        y_val=raw.y_train[vi],
        x_test=raw.x_test[si],
        y_test=raw.y_test[si],
        train_index=ti,
        val_index=vi,
        test_index=si,
    )


def _main(argv: list[str] | None = None) -> int:
    """``python -m ibnn.trial.data NAME... --data-root ROOT``: fetch datasets once."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m ibnn.trial.data",
        description="Download (or find offline) datasets into the data root, once, before sweeps.",
    )
    parser.add_argument("names", nargs="+", choices=sorted(set(DATASETS) - {"toy2d"}))
    parser.add_argument("--data-root", default="~/.cache/ibnn/data", help="target folder")
    args = parser.parse_args(argv)
    for name in args.names:
        try:
            raw = load_raw(name, args.data_root, download=True)
        except DatasetNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"{name}: {len(raw.y_train)} train, {len(raw.y_test)} test under {args.data_root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
