"""Pictures: sizes, digits in the right tiles pixel for pixel, curves that follow the history."""
import json

import numpy as np
import pytest

import fastnet
from fastnet import networks, viz
from fastnet.callbacks import History


def digits(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def test_digit_grid_size_and_tiles():
    x = digits(60_000)
    image = viz.digit_grid(x)
    assert image.size == (6860, 6860) and image.mode == "L"  # ceil(sqrt(60000)) = 245 tiles a side
    a = np.asarray(image)
    for k in (0, 1, 244, 245, 12_345, 59_999):
        r, c = divmod(k, 245)
        np.testing.assert_array_equal(a[r * 28:(r + 1) * 28, c * 28:(c + 1) * 28], x[k])
    assert a[-28:, -28:].max() == 0  # 245**2 - 60000 tiles stay blank


def test_digit_grid_small_and_float_input():
    x = digits(10)
    assert viz.digit_grid(x).size == (4 * 28, 4 * 28)
    as_float = viz.digit_grid(x.astype(np.float32)[:, None] / 255)  # (N, 1, 28, 28) in [0, 1]
    np.testing.assert_array_equal(np.asarray(as_float), np.asarray(viz.digit_grid(x)))
    with pytest.raises(ValueError, match="expected images of shape"):
        viz.digit_grid(np.zeros((5, 784)))


def test_digits_by_label_rows():
    x = digits(300, seed=1)
    y = np.random.default_rng(2).integers(0, 10, 300)
    image = np.asarray(viz.digits_by_label(x, y, per_label=7, label_width=24))
    assert image.shape == (10 * 28, 24 + 7 * 28)
    for label in (0, 3, 9):
        first = x[y == label][0]
        np.testing.assert_array_equal(image[label * 28:(label + 1) * 28, 24:24 + 28], first)
    assert image[3 * 28:4 * 28, :24].max() > 0  # the label is drawn


def test_plot_history_moves_with_the_history(tmp_path):
    h1 = {"loss": [0.5, 0.3, 0.2], "accuracy": [0.8, 0.9, 0.95], "val_loss": [0.4, 0.3, 0.35],
          "val_accuracy": [0.85, 0.9, 0.92]}
    h2 = dict(h1, val_loss=[0.4, 0.2, 0.1])
    a, b = np.asarray(viz.plot_history(h1)), np.asarray(viz.plot_history(h2))
    assert a.shape == b.shape == (420, 1000, 3)
    assert (a != b).any(axis=2).sum() > 200  # the validation loss line moved
    half = a.shape[1] // 2
    np.testing.assert_array_equal(a[:, half:], b[:, half:])  # the accuracy panel did not
    hist = History()
    for e in range(3):
        hist.on_epoch_end(e, {k: v[e] for k, v in h1.items()})
    np.testing.assert_array_equal(np.asarray(viz.plot_history(hist)), a)
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"history": h1}))
    np.testing.assert_array_equal(np.asarray(viz.plot_history(str(path))), a)
    with pytest.raises(ValueError, match="no loss or accuracy"):
        viz.plot_history({"lr": [1]})


def test_plot_model_draws_a_box_per_layer():
    fastnet.set_seed(0)
    mlp, cnn = networks.mlp(), networks.cnn()
    small, big = viz.plot_model(mlp), viz.plot_model(cnn)
    assert big.size[1] > small.size[1] > 8 * 60  # 9 boxes (input + 8 layers) for the MLP, 13 for the CNN
    for image, boxes in ((small, 9), (big, 13)):  # the input box + one per layer
        column = np.asarray(image.convert("L"))[:, image.size[0] // 2]
        dark_runs = (np.diff((column < 128).astype(int)) == 1).sum()
        assert dark_runs == boxes + 1  # the first top border, an arrow into each next box, the last bottom border
