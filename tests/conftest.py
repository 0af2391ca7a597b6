import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from fastnet import _kernels, _seed, backend  # noqa: E402


@pytest.fixture(autouse=True)
def image_ordering_as_at_import(monkeypatch):
    """Every test starts with the built-in default ordering, not chosen in code (tests that set it do not leak)."""
    monkeypatch.setattr(backend, "_data_format", "channels_last")
    monkeypatch.setattr(backend, "_data_format_chosen", False)


@pytest.fixture(autouse=True)
def seed_as_at_import(monkeypatch):
    """Every test starts from the default seed, and one that calls set_seed does not change the next one's."""
    monkeypatch.setattr(_seed, "_seed", _seed.DEFAULT_SEED)
    monkeypatch.setattr(_seed, "_models_created", _seed._models_created)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=_kernels.supported_isas())
def isa(request):
    """Runs a test once per GEMM micro-kernel this CPU supports (portable C, AVX2+FMA, AVX-512)."""
    _kernels.set_isa(request.param)
    yield request.param
    _kernels.set_isa("best")


@pytest.fixture(params=["im2col", "winograd", "direct"])
def conv_algo(request):
    """Runs a test once per convolution algorithm (im2col + GEMM, Winograd F(4x4, 3x3), direct)."""
    _kernels.set_conv_algo(request.param)
    yield request.param
    _kernels.set_conv_algo("auto")
