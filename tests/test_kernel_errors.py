"""The Cython layer rejects bad arguments with errors naming the problem, never a crash."""
import numpy as np
import pytest

from fastnet import _kernels

f32 = np.float32


def test_wrong_dtype_names_the_array_and_the_fix():
    with pytest.raises(TypeError, match=r"a must have dtype float32, got float64.*astype"):
        _kernels.gemm(np.ones((2, 3)), np.ones((3, 4), f32))


def test_byte_swapped_float32_rejected():
    """A big-endian float32 array is float32 to numpy's type number, not to C: its bytes would be read wrong."""
    with pytest.raises(TypeError, match=r"x must have dtype float32, got >f4"):
        _kernels.activation_forward(np.ones((2, 3), ">f4"), "relu")
    with pytest.raises(TypeError, match=r"keep must have dtype uint8"):
        _kernels.dropout_backward(np.ones(4, f32), np.ones(4, ">u2"), 0.5)


def test_output_checks_see_partial_overlaps_and_accept_neighbours():
    buf = np.zeros(12, f32)
    a, b = buf[:6].reshape(2, 3), buf[6:].reshape(3, 2)
    with pytest.raises(ValueError, match="out must not overlap"):
        _kernels.gemm(a, np.ones((3, 3), f32), out=buf[4:10].reshape(2, 3))  # shares a's last two floats
    _kernels.gemm(np.ones((3, 3), f32), np.ones((3, 2), f32), out=b)  # right after a: no overlap
    assert np.array_equal(b, np.full((3, 2), 3, f32))


def test_non_contiguous_rejected():
    a = np.ones((4, 6), f32)[:, ::2]
    with pytest.raises(ValueError, match=r"a with shape \(4, 3\) must be C-contiguous"):
        _kernels.gemm(a, np.ones((3, 2), f32))


def test_not_an_array():
    with pytest.raises(TypeError, match="must be a numpy.ndarray, got list"):
        _kernels.activation_forward([1.0, 2.0], "relu")


def test_gemm_inner_dimensions():
    with pytest.raises(ValueError, match=r"op\(a\) is 2x3 but op\(b\) is 4x5"):
        _kernels.gemm(np.ones((2, 3), f32), np.ones((4, 5), f32))


def test_wrong_output_shape_and_read_only_output():
    a, b = np.ones((2, 3), f32), np.ones((3, 4), f32)
    with pytest.raises(ValueError, match=r"out has shape \(4, 2\), expected \(2, 4\)"):
        _kernels.gemm(a, b, out=np.empty((4, 2), f32))
    ro = np.empty((2, 4), f32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _kernels.gemm(a, b, out=ro)


def test_output_overlapping_input_rejected():
    a = np.ones((3, 3), f32)
    with pytest.raises(ValueError, match="must not overlap"):
        _kernels.gemm(a, a, out=a)


def test_dense_shape_mismatch():
    with pytest.raises(ValueError, match=r"x has shape \(2, 5\) but w has shape \(4, 3\)"):
        _kernels.dense_forward(np.ones((2, 5), f32), np.ones((4, 3), f32))
    with pytest.raises(ValueError, match=r"b has shape \(4,\), expected \(3,\)"):
        _kernels.dense_forward(np.ones((2, 4), f32), np.ones((4, 3), f32), np.ones(4, f32))
    with pytest.raises(ValueError, match=r"dy has shape \(2, 4\), expected \(2, 3\)"):
        _kernels.dense_backward(np.ones((2, 4), f32), np.ones((2, 4), f32), np.ones((4, 3), f32))


def test_conv_channel_mismatch_and_too_small_input():
    with pytest.raises(ValueError, match=r"input has 28 channels.*kernel \(3, 3, 1, 32\) expects 1"):
        _kernels.conv2d_forward(np.ones((2, 1, 28, 28), f32), np.ones((3, 3, 1, 32), f32))
    with pytest.raises(ValueError, match="smaller than the kernel size"):
        _kernels.conv2d_forward(np.ones((1, 2, 2, 1), f32), np.ones((3, 3, 1, 4), f32))
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        _kernels.conv2d_forward(np.ones((1, 5, 5, 1), f32), np.ones((3, 3, 1, 4), f32), padding="full")
    with pytest.raises(ValueError, match="4-D"):
        _kernels.conv2d_forward(np.ones((5, 5, 1), f32), np.ones((3, 3, 1, 4), f32))


def test_maxpool_rejects_bad_argmax():
    dy = np.ones((1, 1, 1, 1), f32)
    with pytest.raises(ValueError, match="offsets outside the input"):
        _kernels.maxpool2d_backward(dy, np.array([[[[99]]]], np.int32), (1, 2, 2, 1))
    with pytest.raises(TypeError, match="int32"):
        _kernels.maxpool2d_backward(dy, np.zeros((1, 1, 1, 1), np.int64), (1, 2, 2, 1))


def test_bad_enums_and_ranges():
    x = np.ones(4, f32)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        _kernels.activation_forward(x, "gelu")
    with pytest.raises(ValueError, match=r"dropout rate must be in \[0, 1\), got 1.0"):
        _kernels.dropout_forward(x, 1.0, 0, 0)
    with pytest.raises(ValueError, match="n_threads must be >= 1"):
        _kernels.activation_forward(x, "relu", n_threads=0)
    with pytest.raises(ValueError, match="unknown ISA"):
        _kernels.set_isa("sse9")


def test_optimizer_slot_shape():
    p = np.ones(4, f32)
    with pytest.raises(ValueError, match=r"slot 0 has shape \(3,\), expected \(4,\)"):
        _kernels.rmsprop_update(p, np.zeros(3, f32), p.copy(), 0.1, 0.9, 1e-7)


def test_empty_dimensions_rejected_in_every_kernel():
    """C divides by and allocates from sizes: no kernel takes an empty dimension, and each says which array."""
    with pytest.raises(ValueError, match=r"a has shape \(0, 3\): every dimension must be >= 1"):
        _kernels.gemm(np.ones((0, 3), f32), np.ones((3, 4), f32))
    with pytest.raises(ValueError, match=r"x has shape \(3, 0\)"):
        _kernels.softmax_forward(np.ones((3, 0), f32))
    with pytest.raises(ValueError, match=r"x has shape \(1, 5, 5, 0\)"):
        _kernels.conv2d_forward(np.ones((1, 5, 5, 0), f32), np.ones((3, 3, 0, 4), f32))
    with pytest.raises(ValueError, match=r"input shape\[3\] must be >= 1, got 0"):
        _kernels.conv2d_workspace_floats((1, 5, 5, 0), (3, 3, 0, 4))
    with pytest.raises(ValueError, match=r"x has shape \(0,\)"):
        _kernels.activation_forward(np.ones(0, f32), "relu")


def test_shape_queries_reject_sizes_c_cannot_hold():
    """The shape-only queries take no arrays, so nothing bounds their sizes but this check: C multiplies them."""
    huge = (2**31 - 1,) * 4
    for query in (_kernels.conv2d_workspace_floats, _kernels.conv2d_uses_winograd, _kernels.conv2d_forward_maxpool_fits):
        with pytest.raises(ValueError, match=r"conv2d: the input of input .* would hold \d+ elements, more than"):
            query(huge, (3, 3, 2**31 - 1, 32))
        with pytest.raises(ValueError, match=r"input shape\[0\] must be in \[1, 2147483647\], got 2147483648"):
            query((2**31, 28, 28, 1), (3, 3, 1, 32))
        with pytest.raises(TypeError, match=r"kernel shape\[3\] must be an int, got float"):
            query((1, 28, 28, 1), (3, 3, 1, 32.0))
    assert _kernels.conv2d_workspace_floats((1, 28, 28, 1), (3, 3, 1, 32)) > 0


def test_thread_counts_checked_and_clamped_the_same_way_in_every_kernel():
    x = np.ones((3, 5), f32)
    calls = {"activation_forward": lambda t: _kernels.activation_forward(x, "relu", n_threads=t),
             "softmax_forward": lambda t: _kernels.softmax_forward(x, n_threads=t),
             "gemm": lambda t: _kernels.gemm(x, x.T.copy(), n_threads=t),
             "maxpool2d_forward": lambda t: _kernels.maxpool2d_forward(x.reshape(1, 3, 5, 1), n_threads=t),
             "rmsprop_update": lambda t: _kernels.rmsprop_update(x.copy(), x.copy(), x.copy(), 0.1, 0.9, 1e-7, n_threads=t)}
    for name, call in calls.items():
        for bad, error in ((0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError), ("2", TypeError)):
            with pytest.raises(error, match="n_threads must be"):
                call(bad)
    calls["gemm"](_kernels.MAX_THREADS + 1)  # clamped to MAX_THREADS, not refused
    _kernels.set_num_threads(10**9)
    try:
        assert _kernels.get_num_threads() == _kernels.MAX_THREADS
    finally:
        _kernels.set_num_threads(None)


def _isa_under(value):
    import os
    import subprocess
    import sys
    env = dict(os.environ, FASTNET_ISA=value)
    code = "from fastnet import _kernels; print(_kernels.get_isa())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_fastnet_isa_sets_the_path_every_call_takes():
    """FASTNET_ISA (as ONEDNN_MAX_CPU_ISA): the bench scripts' worker processes measure one path through it."""
    assert _isa_under("generic").stdout.strip() == "generic"
    assert _isa_under("best").stdout.strip() == _kernels.get_isa()


@pytest.mark.parametrize("value,message", [("avx3", "unknown ISA 'avx3'"),
                                           ("amx_bf16", "this CPU does not support 'amx_bf16'")])
def test_fastnet_isa_names_the_variable_when_it_cannot_be_met(value, message):
    if value in _kernels.supported_isas():
        pytest.skip(f"this CPU supports {value}")
    result = _isa_under(value)
    assert result.returncode != 0
    assert f"FASTNET_ISA={value!r}: {message}" in result.stderr
