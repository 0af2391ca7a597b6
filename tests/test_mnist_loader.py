"""The MNIST loader: local sources, verification, and downloads from a local HTTP server on 127.0.0.1."""
import gzip
import hashlib
import http.server
import os
import shutil
import threading
import time
import warnings

import numpy as np
import pytest

from fastnet.datasets import DatasetError, mnist

SHARED = os.environ.get("FASTNET_DATA")
needs_data = pytest.mark.skipif((not SHARED or not os.path.isdir(os.path.join(SHARED, "mnist"))) and not os.environ.get("CI"),
                                reason="FASTNET_DATA must name the datasets root holding mnist/ (see README); under CI these run and fail")
NAMES = list(mnist.FILES)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No FASTNET_DATA, an empty cache under tmp_path, no mirrors unless a test sets them."""
    monkeypatch.delenv("FASTNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(mnist, "MIRRORS", [])
    monkeypatch.setattr(mnist, "TIMEOUT", 1.0)
    return tmp_path


def idx(array):
    return mnist.to_idx(array)


@pytest.fixture
def synthetic(tmp_path, monkeypatch):
    """A small MNIST-shaped release (300 + 50 random digits) as gzipped IDX files in tmp_path/synthetic, with
    the loader's expected SHA256s patched to its own: every loader path runs without the real data."""
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (300, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, 300, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, 50, dtype=np.uint8)}
    folder = tmp_path / "synthetic"
    folder.mkdir()
    hashes = {}
    for name, array in arrays.items():
        (folder / (name + ".gz")).write_bytes(gzip.compress(idx(array), compresslevel=1))
        hashes[name] = hashlib.sha256(idx(array)).hexdigest()
    monkeypatch.setattr(mnist, "FILES", hashes)
    Handler.root = str(folder)
    expected = ((arrays[NAMES[0]], arrays[NAMES[1]]), (arrays[NAMES[2]], arrays[NAMES[3]]))
    return folder, expected


def raw_copy(source, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        with gzip.open(os.path.join(source, name + ".gz"), "rb") as f:
            (folder / name).write_bytes(f.read())
    return folder


def check_same(result, expected):
    assert len(result) == 2 and all(len(pair) == 2 for pair in result)
    for got, want in zip(result[0] + result[1], expected[0] + expected[1]):
        assert got.dtype == np.uint8 and got.flags.writeable
        np.testing.assert_array_equal(got, want)


def check_mnist(result):
    (x_train, y_train), (x_test, y_test) = result
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert list(y_train[:5]) == [5, 0, 4, 1, 9] and list(y_test[:3]) == [7, 2, 1]
    assert x_train.max() == 255 and x_train.flags.writeable
    assert sorted(np.bincount(y_train)) [0] > 5000


@needs_data
def test_fastnet_data_env():
    check_mnist(mnist.load_data())


@needs_data
def test_real_gzipped_folder_and_raw_folder_agree(isolated):
    source = os.path.join(SHARED, "mnist")
    a = mnist.load_data(path=source)
    b = mnist.load_data(path=raw_copy(source, isolated / "raw"))
    check_mnist(b)
    for u, v in zip(a[0] + a[1], b[0] + b[1]):
        np.testing.assert_array_equal(u, v)


def test_gzipped_folder_and_raw_folder_agree(isolated, synthetic):
    folder, expected = synthetic
    check_same(mnist.load_data(path=folder), expected)
    check_same(mnist.load_data(path=raw_copy(folder, isolated / "raw")), expected)


def test_fastnet_data_names_a_datasets_root(isolated, synthetic, monkeypatch):
    folder, expected = synthetic
    (isolated / "root").mkdir()
    shutil.copytree(folder, isolated / "root" / "mnist")
    monkeypatch.setenv("FASTNET_DATA", str(isolated / "root"))
    check_same(mnist.load_data(), expected)


def test_keras_npz(isolated, synthetic):
    folder, ((xt, yt), (xs, ys)) = synthetic
    path = isolated / "mnist.npz"
    np.savez_compressed(path, x_train=xt, y_train=yt, x_test=xs, y_test=ys)
    check_same(mnist.load_data(path=path), synthetic[1])
    np.savez(path, x_train=xt, y_train=yt, x_test=xs, y_test=ys[::-1])  # tampered labels
    with pytest.raises(DatasetError, match="checksum mismatch"):
        mnist.load_data(path=path)


@pytest.mark.parametrize("damage,message", [
    (lambda b: b[:len(b) // 2], "truncated"),
    (lambda b: b"\x00\x00\x08\x01" + b[4:], "bad magic number"),
    (lambda b: b[:1000] + bytes([b[1000] ^ 1]) + b[1001:], "checksum mismatch"),
    (lambda b: b + b"\x00", "trailing bytes"),
])
def test_damaged_file_is_named(isolated, synthetic, damage, message):
    folder = raw_copy(synthetic[0], isolated / "raw")
    target = folder / "train-images-idx3-ubyte"
    target.write_bytes(damage(target.read_bytes()))
    with pytest.raises(DatasetError, match=message) as info:
        mnist.load_data(path=folder)
    text = str(info.value)
    assert "train-images-idx3-ubyte" in text and "FASTNET_DATA" in text  # what failed, and the fix


def test_truncated_gzip(isolated, synthetic):
    folder = isolated / "gz"
    shutil.copytree(synthetic[0], folder)
    target = folder / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="corrupted or truncated gzip"):
        mnist.load_data(path=folder)


def test_every_source_listed_when_nothing_works(isolated):
    with pytest.raises(DatasetError) as info:
        mnist.load_data(path=isolated / "nowhere")
    text = str(info.value)
    assert "path=" in text and "cache (" in text and "download" in text and "no mirrors" in text


def test_bad_path_falls_back_with_a_warning(isolated, synthetic, monkeypatch):
    folder, expected = synthetic
    (isolated / "root").mkdir()
    shutil.copytree(folder, isolated / "root" / "mnist")
    monkeypatch.setenv("FASTNET_DATA", str(isolated / "root"))
    bad = raw_copy(folder, isolated / "raw")
    (bad / "train-labels-idx1-ubyte").write_bytes(b"junk")
    with pytest.warns(UserWarning, match="bad magic number"):
        check_same(mnist.load_data(path=bad), expected)


# ---- downloads from a local server ----

def corrupted(path):
    """The file with one byte flipped inside its IDX data, re-gzipped."""
    with gzip.open(path) as f:
        raw = bytearray(f.read())
    raw[500] ^= 0xFF
    return gzip.compress(bytes(raw), compresslevel=1)


class Handler(http.server.BaseHTTPRequestHandler):
    """/ok/<file> serves the files in root; /404/, /500/, /slow/, /corrupt/, /short/ misbehave."""

    root = None  # the folder served (set by the synthetic fixture)

    def log_message(self, *args):
        pass

    def do_GET(self):
        kind, _, name = self.path.strip("/").partition("/")
        if kind == "404":
            return self.send_error(404)
        if kind == "500":
            return self.send_error(500)
        if kind == "slow":
            time.sleep(2.5)  # longer than the loader's timeout in these tests
        path = os.path.join(self.root, name)
        if not os.path.isfile(path):
            return self.send_error(404)
        if kind == "corrupt":
            data = corrupted(path)
        else:
            with open(path, "rb") as f:
                data = f.read()
        body = data[:len(data) // 3] if kind == "short" else data
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))  # 'short' promises more than it sends
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def cache_files(tmp):
    folder = tmp / "cache" / "fastnet" / "mnist"
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_download_skips_broken_mirrors_and_fills_the_cache(isolated, synthetic, server, monkeypatch):
    monkeypatch.setattr(mnist, "MIRRORS", [f"{server}/404/", f"{server}/500/", f"{server}/ok/"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_same(mnist.load_data(), synthetic[1])
    assert cache_files(isolated) == sorted(n + ".gz" for n in NAMES)
    monkeypatch.setattr(mnist, "MIRRORS", [])  # now served from the cache alone
    check_same(mnist.load_data(), synthetic[1])


@pytest.mark.parametrize("kind,reason", [("404", "HTTP 404"), ("500", "HTTP 500"), ("slow", "timed out"),
                                         ("corrupt", "checksum mismatch"), ("short", "incomplete download")])
def test_failed_download_leaves_no_file(isolated, synthetic, server, monkeypatch, kind, reason):
    monkeypatch.setattr(mnist, "MIRRORS", [f"{server}/{kind}/"])
    with pytest.raises(DatasetError, match=reason) as info:
        mnist.load_data()
    assert f"{server}/{kind}/train-images-idx3-ubyte.gz" in str(info.value)
    assert cache_files(isolated) == []  # no partial or unverified file


def test_concurrent_downloads_agree(isolated, synthetic, server, monkeypatch):
    monkeypatch.setattr(mnist, "MIRRORS", [f"{server}/ok/"])
    results, errors = [], []

    def load():
        try:
            results.append(mnist.load_data())
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 3
    assert cache_files(isolated) == sorted(n + ".gz" for n in NAMES)
    for r in results:
        check_same(r, synthetic[1])
