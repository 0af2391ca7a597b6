"""Short runs on the real MNIST data through the `fastnet-train` command, with floors a broken kernel,
layer or optimizer cannot reach (full-length results are in the README)."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnet
from fastnet import cli

SHARED = os.environ.get("FASTNET_DATA")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif((not SHARED or not os.path.isdir(os.path.join(SHARED, "mnist"))) and not os.environ.get("CI"),
                                 reason="FASTNET_DATA must name the datasets root holding mnist/ (see README); under CI these run and fail")]


def test_mlp_one_epoch_in_process(tmp_path, capsys):
    onnx = os.environ.get("FASTNET_REQUIRE_ONNX") == "1" or importlib.util.find_spec("onnx") is not None
    export = ["--export", "onnx"] if onnx else []
    assert cli.main(["mlp", "--epochs", "1", "--out", str(tmp_path), "--verbose", "2"] + export) == 0
    out = capsys.readouterr().out
    assert "Epoch 1/1" in out and "Test accuracy:" in out and "Total params: 669,706" in out
    record = json.loads((tmp_path / "history.json").read_text())
    assert record["network"] == "mlp" and record["seed"] == 1337 and record["epochs"] == [1]
    # Keras reaches 0.966 here after one epoch; a wrong gradient or update rule stays far below.
    assert record["test_accuracy"] >= 0.95
    assert record["history"]["val_accuracy"] == [record["test_accuracy"]]
    csv_lines = (tmp_path / "history.csv").read_text().splitlines()
    assert csv_lines[0] == "epoch,loss,accuracy,val_loss,val_accuracy" and csv_lines[1].startswith("1,")
    assert (tmp_path / "model.npz").exists()
    if onnx:  # the exported graph predicts what the saved model predicts
        import onnx as onnx_module

        onnx_module.checker.check_model(str(tmp_path / "model.onnx"))
        if importlib.util.find_spec("onnxruntime"):
            import onnxruntime

            x = np.random.default_rng(0).random((3, 784), dtype=np.float32)
            got = onnxruntime.InferenceSession(str(tmp_path / "model.onnx")).run(None, {"input": x})[0]
            np.testing.assert_allclose(got, fastnet.load_model(str(tmp_path / "model.npz")).predict(x),
                                       rtol=1e-5, atol=1e-6)


def test_export_needs_float32(capsys):
    with pytest.raises(SystemExit):
        cli.main(["mlp", "--precision", "bf16", "--export", "onnx"])
    assert "--export onnx needs --precision float32" in capsys.readouterr().err


def test_cnn_one_epoch_through_the_entry_point(tmp_path):
    """channels_first, as in the article."""
    cmd = [os.path.join(os.path.dirname(sys.executable), "fastnet-train"), "cnn", "--epochs", "1", "--out",
           str(tmp_path), "--verbose", "0", "--data-format", "channels_first"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "history.json").read_text())
    assert record["test_accuracy"] >= 0.97  # Keras: ~0.98 after one epoch
    assert "Test accuracy:" in result.stdout


def test_ctrl_c_in_fastnet_train_keeps_what_was_trained(tmp_path, monkeypatch, capsys):
    """Ctrl-C during `fastnet-train`: the model of the last completed step and the finished epochs are written,
    and the saved model continues training."""
    from fastnet.models import Sequential

    real, calls = Sequential._train_step, []

    def step(self, *args):
        calls.append(1)
        if len(calls) == 30:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(Sequential, "_train_step", step)
    try:
        status = cli.main(["mlp", "--epochs", "2", "--out", str(tmp_path), "--verbose", "0"])
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt escaped fastnet-train: nothing was saved")
    assert status == 130
    assert "Interrupted after 29 training steps (0 whole epochs)" in capsys.readouterr().err
    record = json.loads((tmp_path / "history.json").read_text())
    assert record["interrupted_after_steps"] == 29 and record["epochs"] == []
    monkeypatch.undo()
    import fastnet

    model = fastnet.load_model(tmp_path / "model.npz")
    assert model.step == 29 and model.optimizer.iterations == 29
