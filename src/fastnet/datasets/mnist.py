"""MNIST, returned exactly like keras.datasets.mnist.load_data().

Sources, in order: the `path` argument (a folder of the four IDX files, gzipped or not, or a Keras
`mnist.npz`), `$FASTNET_DATA/mnist/`, the cache (`$XDG_CACHE_HOME/fastnet/mnist` or `~/.cache/fastnet/mnist`),
then a download from MIRRORS. Every file is checked against the SHA256 of its decompressed IDX bytes
before it is used or enters the cache.
"""
import os
import struct
import warnings
import zipfile

import numpy as np

from fastnet.datasets._files import (DatasetError, cache_root, datasets_root_env, describe, download_verified,
                                     read_maybe_gzip, sha256)

# SHA256 of the decompressed IDX files (the gzip files of the usual mirrors hash differently, and a
# re-compressed copy is just as good, so the content is what we verify).
FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS = [
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
]
TIMEOUT = 30.0  # seconds per connection attempt and per read


def parse_idx(data, expect_dims, name="IDX data"):
    """Parse IDX bytes of unsigned bytes with len(expect_dims) dimensions (None in expect_dims: any size)."""
    ndim = len(expect_dims)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] != ndim:
        raise ValueError(f"{name}: bad magic number {data[:4].hex() or '(empty)'}, "
                         f"expected 000008{ndim:02x} (unsigned bytes, {ndim} dimensions)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated header ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    for got, want in zip(dims, expect_dims):
        if want is not None and got != want:
            raise ValueError(f"{name}: dimensions {dims}, expected {tuple(expect_dims)}")
    size = header + int(np.prod(dims))
    if len(data) != size:
        raise ValueError(f"{name}: {len(data)} bytes, expected exactly {size} for dimensions {dims} "
                         f"({'truncated' if len(data) < size else 'trailing bytes'})")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def to_idx(array):
    """The IDX bytes of a uint8 array (for verifying arrays that did not come from IDX files)."""
    return struct.pack(f">4B{array.ndim}I", 0, 0, 8, array.ndim, *array.shape) + np.ascontiguousarray(array).tobytes()


def _check(name, data):
    got = sha256(data)
    if got != FILES[name]:
        raise ValueError(f"{name}: checksum mismatch (SHA256 {got[:16]}..., expected {FILES[name][:16]}...): "
                         "the file is corrupted or not the MNIST release")


def _arrays(blobs):
    """Parse the four IDX files (structure first, for a precise error), then verify their checksums."""
    x_train = parse_idx(blobs["train-images-idx3-ubyte"], (None, 28, 28), "train-images-idx3-ubyte")
    y_train = parse_idx(blobs["train-labels-idx1-ubyte"], (x_train.shape[0],), "train-labels-idx1-ubyte")
    x_test = parse_idx(blobs["t10k-images-idx3-ubyte"], (None, 28, 28), "t10k-images-idx3-ubyte")
    y_test = parse_idx(blobs["t10k-labels-idx1-ubyte"], (x_test.shape[0],), "t10k-labels-idx1-ubyte")
    for name, data in blobs.items():
        _check(name, data)
    return (x_train, y_train), (x_test, y_test)


def _find(folder, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(2, "missing", os.path.join(folder, name + "[.gz]"))


def _from_folder(folder):
    return _arrays({name: read_maybe_gzip(_find(folder, name)) for name in FILES})


def _from_npz(path):
    """A Keras mnist.npz (x_train, y_train, x_test, y_test), read without pickle and verified."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except KeyError as e:
        raise ValueError(f"{path}: not a Keras mnist.npz (missing {e})") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: corrupted or not an npz file ({e})") from None
    except (RuntimeError, NotImplementedError) as e:  # zipfile's words for an encrypted member, an unknown method
        raise ValueError(f"{path}: corrupted or not an npz file: a member is encrypted or compressed in a way a "
                         f"Keras mnist.npz never is ({e})") from None
    for key, name in zip(("x_train", "y_train", "x_test", "y_test"), FILES):
        a = arrays[key]
        if a.dtype != np.uint8:
            raise ValueError(f"{path}: {key} has dtype {a.dtype}, expected uint8")
        _check(name, to_idx(a))
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _from_path(path):
    if os.path.isdir(path):
        npz = os.path.join(path, "mnist.npz")
        if os.path.isfile(npz) and not os.path.exists(os.path.join(path, "train-images-idx3-ubyte.gz")):
            return _from_npz(npz)
        return _from_folder(path)
    if os.path.isfile(path):
        return _from_npz(path)
    raise FileNotFoundError(2, "no such file or folder", path)


def _download(cache, mirrors, timeout):
    blobs = {}
    for name in FILES:
        dest = os.path.join(cache, name + ".gz")
        reasons = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + name + ".gz"
            try:
                blobs[name] = download_verified(url, dest, FILES[name], timeout)
                break
            except Exception as e:  # each mirror's failure is reported, then the next is tried
                reasons.append(f"{url}: {describe(e)}")
        else:
            raise OSError("; ".join(reasons) if reasons else "no mirrors configured")
    return _arrays(blobs)


def load_data(path=None):
    """Load MNIST: `(x_train, y_train), (x_test, y_test)`, uint8 arrays (60000, 28, 28), (60000,),
    (10000, 28, 28), (10000,), as keras.datasets.mnist.load_data() returns them."""
    sources = []
    if path is not None:
        sources.append((f"path={path!r}", lambda: _from_path(os.fspath(path))))
    root = datasets_root_env()
    if root:
        folder = os.path.join(root, "mnist")
        sources.append((f"$FASTNET_DATA ({folder})", lambda: _from_folder(folder)))
    cache = os.path.join(cache_root(), "mnist")
    sources.append((f"cache ({cache})", lambda: _from_folder(cache)))
    sources.append(("download from " + ", ".join(MIRRORS), lambda: _download(cache, MIRRORS, TIMEOUT)))

    failures = []
    for label, load in sources:
        try:
            result = load()
        except Exception as e:
            failures.append(f"  - {label}: {describe(e)}")
            continue
        if any("not found" not in f for f in failures):
            warnings.warn("MNIST loaded from " + label + " after these sources failed:\n" + "\n".join(failures),
                          stacklevel=2)
        return result
    raise DatasetError(
        "could not load MNIST from any source:\n" + "\n".join(failures) + "\n"
        "Fix: download the four files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into a folder named mnist/ and set "
        "FASTNET_DATA to the folder above it, or pass load_data(path=<that folder or a Keras mnist.npz>).")
