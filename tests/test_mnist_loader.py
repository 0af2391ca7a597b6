"""The MNIST loader: local sources, verification, and downloads from a local HTTP server on 127.0.0.1."""
import functools
import gzip
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


def gz_source():
    return os.path.join(SHARED, "mnist")


def raw_copy(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        with gzip.open(os.path.join(gz_source(), name + ".gz"), "rb") as f:
            (folder / name).write_bytes(f.read())
    return folder


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
def test_gzipped_folder_and_raw_folder_agree(isolated):
    a = mnist.load_data(path=gz_source())
    b = mnist.load_data(path=raw_copy(isolated / "raw"))
    check_mnist(b)
    for u, v in zip(a[0] + a[1], b[0] + b[1]):
        np.testing.assert_array_equal(u, v)


@needs_data
def test_keras_npz(isolated):
    (xt, yt), (xs, ys) = mnist.load_data(path=gz_source())
    path = isolated / "mnist.npz"
    np.savez_compressed(path, x_train=xt, y_train=yt, x_test=xs, y_test=ys)
    check_mnist(mnist.load_data(path=path))
    np.savez(path, x_train=xt, y_train=yt, x_test=xs, y_test=ys[::-1])  # tampered labels
    with pytest.raises(DatasetError, match="checksum mismatch"):
        mnist.load_data(path=path)


@needs_data
@pytest.mark.parametrize("damage,message", [
    (lambda b: b[:len(b) // 2], "truncated"),
    (lambda b: b"\x00\x00\x08\x01" + b[4:], "bad magic number"),
    (lambda b: b[:1000] + bytes([b[1000] ^ 1]) + b[1001:], "checksum mismatch"),
    (lambda b: b + b"\x00", "trailing bytes"),
])
def test_damaged_file_is_named(isolated, damage, message):
    folder = raw_copy(isolated / "raw")
    target = folder / "train-images-idx3-ubyte"
    target.write_bytes(damage(target.read_bytes()))
    with pytest.raises(DatasetError, match=message) as info:
        mnist.load_data(path=folder)
    text = str(info.value)
    assert "train-images-idx3-ubyte" in text and "FASTNET_DATA" in text  # what failed, and the fix


@needs_data
def test_truncated_gzip(isolated):
    folder = isolated / "gz"
    shutil.copytree(gz_source(), folder)
    target = folder / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="corrupted or truncated gzip"):
        mnist.load_data(path=folder)


def test_every_source_listed_when_nothing_works(isolated):
    with pytest.raises(DatasetError) as info:
        mnist.load_data(path=isolated / "nowhere")
    text = str(info.value)
    assert "path=" in text and "cache (" in text and "download" in text and "no mirrors" in text


@needs_data
def test_bad_path_falls_back_with_a_warning(isolated, monkeypatch):
    monkeypatch.setenv("FASTNET_DATA", SHARED)
    folder = raw_copy(isolated / "raw")
    (folder / "train-labels-idx1-ubyte").write_bytes(b"junk")
    with pytest.warns(UserWarning, match="bad magic number"):
        check_mnist(mnist.load_data(path=folder))


# ---- downloads from a local server ----

@functools.lru_cache(maxsize=None)
def corrupted(path):
    """The file with one byte flipped inside its IDX data, re-gzipped (made once: the server must answer fast)."""
    with gzip.open(path) as f:
        raw = bytearray(f.read())
    raw[500] ^= 0xFF
    return gzip.compress(bytes(raw), compresslevel=1)


class Handler(http.server.BaseHTTPRequestHandler):
    """/ok/<file> serves the real files; /404/, /500/, /slow/, /corrupt/, /short/ misbehave."""

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
        path = os.path.join(gz_source(), name)
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


@needs_data
def test_download_skips_broken_mirrors_and_fills_the_cache(isolated, server, monkeypatch):
    monkeypatch.setattr(mnist, "MIRRORS", [f"{server}/404/", f"{server}/500/", f"{server}/ok/"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_mnist(mnist.load_data())
    assert cache_files(isolated) == sorted(n + ".gz" for n in NAMES)
    monkeypatch.setattr(mnist, "MIRRORS", [])  # now served from the cache alone
    check_mnist(mnist.load_data())


@needs_data
@pytest.mark.parametrize("kind,reason", [("404", "HTTP 404"), ("500", "HTTP 500"), ("slow", "timed out"),
                                         ("corrupt", "checksum mismatch"), ("short", "incomplete download")])
def test_failed_download_leaves_no_file(isolated, server, monkeypatch, kind, reason):
    if kind == "corrupt":
        corrupted(os.path.join(gz_source(), NAMES[0] + ".gz"))  # ready before the loader's timeout starts
    monkeypatch.setattr(mnist, "MIRRORS", [f"{server}/{kind}/"])
    with pytest.raises(DatasetError, match=reason) as info:
        mnist.load_data()
    assert f"{server}/{kind}/train-images-idx3-ubyte.gz" in str(info.value)
    assert cache_files(isolated) == []  # no partial or unverified file


@needs_data
def test_concurrent_downloads_agree(isolated, server, monkeypatch):
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
        check_mnist(r)
