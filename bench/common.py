"""What the side-by-side scripts share: the data, FLOP counts, the measured peak, the PyTorch twins."""
import json
import os
import statistics
import time

import numpy as np

# Floating-point operations per training image (forward + backward, no input gradient for the first layer)
# and per inference image (forward), counted from the layer shapes as direct convolutions and plain matrix
# products. fastnet's Winograd convolutions do fewer multiplications than that (the second convolution's
# three GEMMs shrink 4x), so its GFLOP/s are effective figures, and can pass the GEMM peak.
def _counts():
    mlp_fwd = 2 * (784 * 512 + 512 * 512 + 512 * 10)
    conv1, conv2 = 2 * 26 * 26 * 9 * 32, 2 * 24 * 24 * 288 * 32
    dense = 2 * (4608 * 128 + 128 * 10)
    cnn_fwd = conv1 + conv2 + dense
    return {"mlp": (3 * mlp_fwd - 2 * 784 * 512, mlp_fwd), "cnn": (cnn_fwd + conv1 + 2 * conv2 + 2 * dense, cnn_fwd)}


FLOPS = _counts()  # network: (train FLOP per image, inference FLOP per image)


def mnist(network, n_train=None):
    """Real MNIST if FASTNET_DATA (or the cache) has it; random data of the same shapes otherwise."""
    from fastnet import networks

    try:
        (x, y), (xt, yt) = networks.mnist_arrays(network)
    except Exception as e:  # no data: timing does not depend on the values
        print(f"(MNIST not available: {e.__class__.__name__}; timing on random data of the same shapes)")
        shape = (784,) if network == "mlp" else (28, 28, 1)
        rng = np.random.default_rng(0)
        x, xt = rng.random((60000,) + shape, np.float32), rng.random((10000,) + shape, np.float32)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 60000)]
        yt = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 10000)]
    if n_train:
        x, y = x[:n_train], y[:n_train]
    return (x, y), (xt, yt)


def measured_peak(n_threads, size=2048, repeats=3):
    """The machine's fp32 GEMM peak as measured here: the best of fastnet's GEMM and numpy's BLAS on a
    large square product (GFLOP/s)."""
    from fastnet import _kernels

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty((size, size), np.float32)
    best = {}
    for name, fn in (("fastnet", lambda: _kernels.gemm(a, b, out=c, n_threads=n_threads)), ("numpy", lambda: a @ b)):
        best[name] = 2 * size ** 3 / min(timings(fn, repeats)) / 1e9
    return max(best.values()), best


def timings(call, repeats):
    """Seconds of each of `repeats` calls, after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return times


def median(values):
    return statistics.median(values)


def torch_available():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def torch_model(network):
    """The same architecture, initialization (Glorot uniform, zero biases) and optimizer in PyTorch."""
    import torch
    from torch import nn

    if network == "mlp":
        model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 512), nn.ReLU(),
                              nn.Dropout(0.2), nn.Linear(512, 10))
    else:
        model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Dropout(0.25), nn.Flatten(), nn.Linear(4608, 128), nn.ReLU(), nn.Dropout(0.5),
                              nn.Linear(128, 10))
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    if network == "mlp":
        opt = torch.optim.RMSprop(model.parameters(), lr=0.001, alpha=0.9, eps=1e-7)
    else:
        opt = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.95, eps=1e-7)
    return model, opt


def torch_data(network, x, y):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2) if network == "cnn" else x))
    return x, torch.from_numpy(y.argmax(1).astype(np.int64))


def _autocast(enabled):
    """PyTorch's CPU mixed precision (bfloat16 autocast), the counterpart of Keras's mixed_bfloat16."""
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def torch_epoch(model, opt, x, y, batch_size, autocast=False):
    import torch

    model.train()
    loss_fn = torch.nn.CrossEntropyLoss()
    order = torch.randperm(x.shape[0])
    for start in range(0, x.shape[0], batch_size):
        idx = order[start:start + batch_size]
        opt.zero_grad(set_to_none=True)
        with _autocast(autocast):
            loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()


def torch_predict(model, x, batch_size, autocast=False):
    import torch

    model.eval()
    with torch.no_grad(), _autocast(autocast):
        return torch.cat([torch.softmax(model(x[s:s + batch_size]).float(), 1)
                          for s in range(0, x.shape[0], batch_size)])


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return os.uname().machine


def write_json(path, data):
    """A script's --json: its figures for bench/report.py (nothing when no path was given)."""
    if path:
        with open(path, "w") as f:
            json.dump(data, f, indent=1)
