"""Fuzzing the parsers of untrusted files (IDX, npz, saved models): every input either loads or raises the
parser's own error; none crashes, hangs or runs code. Inputs that once failed are kept as @example."""
import io
import os
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fastnet.datasets import mnist
from fastnet.layers import Conv2D, Dense, Flatten
from fastnet.models import Sequential, load_model
from fastnet.saving import ModelFileError

FUZZ = settings(max_examples=int(os.environ.get("FASTNET_FUZZ_EXAMPLES", "300")), deadline=2000,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.binary(max_size=64))
@example(b"")
@example(b"\x00\x00\x08\x03")                      # header cut short
@example(b"\x00\x00\x08\x03" + b"\xff" * 12)       # dimensions of 4 billion
def test_idx_random_bytes(data):
    try:
        a = mnist.parse_idx(data, (None, None, None))
    except ValueError:
        return
    assert a.dtype == np.uint8 and a.size == len(data) - 16


@FUZZ
@given(st.lists(st.integers(0, 40), min_size=1, max_size=3), st.integers(-3, 3))
def test_idx_headers_with_wrong_lengths(dims, extra):
    header = struct.pack(f">4B{len(dims)}I", 0, 0, 8, len(dims), *dims)
    size = int(np.prod(dims))
    payload = bytes(max(0, size + extra))
    try:
        a = mnist.parse_idx(header + payload, [None] * len(dims))
    except ValueError as e:
        assert len(payload) != size and ("truncated" in str(e) or "trailing" in str(e))
        return
    assert len(payload) == size and a.shape == tuple(dims)


def _valid_npz():
    buf = io.BytesIO()
    np.savez(buf, x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros(2, np.uint8),
             x_test=np.zeros((1, 28, 28), np.uint8), y_test=np.zeros(1, np.uint8))
    return buf.getvalue()


NPZ = _valid_npz()


def _mutate(blob, positions, values, cut):
    data = bytearray(blob)
    for p, v in zip(positions, values):
        data[p % len(data)] = v
    return bytes(data[:len(data) - cut % len(data)] if cut else data)


@FUZZ
@given(st.lists(st.integers(0, 10**6), max_size=8), st.lists(st.integers(0, 255), max_size=8), st.integers(0, 10**6))
def test_npz_mutations(tmp_path_factory, positions, values, cut):
    path = tmp_path_factory.mktemp("npz") / "mnist.npz"
    path.write_bytes(_mutate(NPZ, positions, values, cut))
    with pytest.raises(ValueError):  # never valid: even intact, these zeros fail the MNIST checksum
        mnist._from_npz(str(path))


def _model_file():
    import tempfile

    m = Sequential([Conv2D(2, (3, 3), input_shape=(5, 5, 1)), Flatten(), Dense(2, activation="softmax")])
    m.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    with tempfile.TemporaryDirectory() as d:
        m.save(os.path.join(d, "m.npz"))
        with open(os.path.join(d, "m.npz"), "rb") as f:
            return f.read()


MODEL = _model_file()


@FUZZ
@given(st.lists(st.integers(0, 10**6), max_size=6), st.lists(st.integers(0, 255), max_size=6), st.integers(0, 10**6))
def test_saved_model_mutations(tmp_path_factory, positions, values, cut):
    path = tmp_path_factory.mktemp("model") / "m.npz"
    path.write_bytes(_mutate(MODEL, positions, values, cut))
    try:
        model = load_model(path)
    except ModelFileError:
        return
    assert model.count_params() == 2 * 9 + 2 + 2 * 9 * 2 + 2  # a mutation that left the archive intact


@FUZZ
@given(st.text(max_size=200))
@example('{"format": "fastnet-model", "version": 1, "model": {"name": "x", "layers": [{"class_name": "Dense"}]}}')
@example('{"format": "fastnet-model", "version": 1, "model": {"name": "x", "layers": [{"class_name": "os.system", "config": {}}]}}')
@example('[]')
def test_saved_model_config_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "m.npz"
    with zipfile.ZipFile(path, "w") as z:
        buf = io.BytesIO()
        np.save(buf, np.array(text))
        z.writestr("fastnet_model.json.npy", buf.getvalue())
    with pytest.raises(ModelFileError):
        load_model(path)


@pytest.mark.parametrize("flag,method", [(0x1, zipfile.ZIP_STORED), (0, 99)], ids=["encrypted", "unknown method"])
def test_npz_members_encrypted_or_compressed_otherwise_are_refused(tmp_path, flag, method):
    """Two mutations the fuzzer found (one byte of a member's central directory entry): zipfile raises RuntimeError or
    NotImplementedError, which the loader names as a corrupted file."""
    data = bytearray(NPZ)
    offset = data.index(b"PK\x01\x02")  # the first member's central directory entry: flags at +8, method at +10
    data[offset + 8] |= flag
    data[offset + 10:offset + 12] = method.to_bytes(2, "little")
    path = tmp_path / "mnist.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="encrypted or compressed"):
        mnist._from_npz(str(path))
