"""`fastnet-train mlp|cnn`: the article's networks with its hyperparameters, from the command line."""
import argparse
import csv
import io
import json
import os
import platform
import sys
import time

import fastnet
from fastnet import distributed, mixed_precision, networks, onnx_format, viz
from fastnet._io import atomic_write


def _parser():
    p = argparse.ArgumentParser(prog="fastnet-train", description=(
        "Train the article's MNIST networks: mlp (784-512-512-10, RMSprop, 20 epochs) or cnn (2 conv + pool + "
        "dense, Adadelta, 12 epochs), batch 128, validating on the test set each epoch."))
    p.add_argument("network", choices=sorted(networks.RECIPES))
    p.add_argument("--epochs", type=int, help="default: 20 (mlp) or 12 (cnn)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, help="default: FASTNET_NUM_THREADS, OMP_NUM_THREADS, else all CPUs")
    p.add_argument("--seed", type=int, default=fastnet.get_seed(), help="default: %(default)s")
    p.add_argument("--data", help="folder with the MNIST files or a Keras mnist.npz (default: FASTNET_DATA, "
                                  "the cache, then a download)")
    p.add_argument("--out", help="output folder (default: runs/<network>)")
    p.add_argument("--precision", choices=["float32", "bf16"], default="float32",
                   help="bf16: Keras's mixed_bfloat16 policy (bfloat16 products, float32 weights and sums)")
    p.add_argument("--data-format", choices=["channels_last", "channels_first"], default="channels_last",
                   help="image ordering of the cnn's input (default: %(default)s)")
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1, help="0 silent, 1 progress bar, 2 one line "
                                                                           "per epoch (default: %(default)s)")
    p.add_argument("--export", choices=["onnx"], help="also write the trained model as model.onnx (needs the onnx "
                                                      "extra: pip install 'fastnet[onnx]')")
    return p


def write_history(history, folder, extra):
    """history.json (with the run's facts) and history.csv (one row per epoch), both written atomically."""
    keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in history.history]
    record = {**extra, "epochs": [e + 1 for e in history.epoch], "history": {k: history.history[k] for k in keys}}
    atomic_write(os.path.join(folder, "history.json"), lambda f: f.write(json.dumps(record, indent=1).encode()))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["epoch"] + keys)
    for i, epoch in enumerate(history.epoch):
        writer.writerow([epoch + 1] + [f"{history.history[k][i]:.6f}" for k in keys])
    atomic_write(os.path.join(folder, "history.csv"), lambda f: f.write(text.getvalue().encode()))


def _say(*args, **kwargs):
    """print, on rank 0 only when data-parallel (the other ranks compute the same figures)."""
    if distributed.is_primary():
        print(*args, **kwargs)


def main(argv=None):
    """Under mpiexec the run is data-parallel (import fastnet started MPI): same recipe, one set of outputs."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.export == "onnx":  # checked before training, not after it
        if args.precision == "bf16":
            parser.error("--export onnx needs --precision float32: an ONNX float32 graph would not reproduce "
                         "bfloat16 products")
        onnx_format.require_onnx()
    epochs_default, _, article = networks.RECIPES[args.network]
    epochs = args.epochs if args.epochs is not None else epochs_default
    if args.threads is not None:
        fastnet.set_num_threads(args.threads)
    fastnet.set_seed(args.seed)
    mixed_precision.set_global_policy("mixed_bfloat16" if args.precision == "bf16" else "float32")
    out = args.out or os.path.join("runs", args.network)

    (x_train, y_train), (x_test, y_test) = networks.mnist_arrays(args.network, args.data_format, args.data)
    model = networks.mlp() if args.network == "mlp" else networks.cnn(args.data_format)
    if args.verbose:
        _say(fastnet.info())
        model.summary(print_fn=_say)
    start = time.perf_counter()
    facts = {"network": args.network, "seed": args.seed, "batch_size": args.batch_size,
             "threads": fastnet.get_num_threads(), "processes": distributed.size(),
             "policy": mixed_precision.global_policy().name}
    try:
        history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=epochs, verbose=args.verbose,
                            validation_data=(x_test, y_test))
    except KeyboardInterrupt:  # keep what was trained: the last completed step, every finished epoch
        os.makedirs(out, exist_ok=True)
        model.save(os.path.join(out, "model.npz"))
        write_history(model.history, out, {**facts, "interrupted_after_steps": model.step})
        print(f"\nInterrupted after {model.step} training steps ({len(model.history.epoch)} whole epochs): wrote "
              f"{out}/model.npz, history.json and history.csv. Continue with fastnet.load_model('{out}/model.npz')"
              f".fit(..., initial_epoch={model.epochs_trained}).", file=sys.stderr)
        return 130
    train_seconds = time.perf_counter() - start
    loss, acc = model.evaluate(x_test, y_test, batch_size=args.batch_size)
    _say(f"Test loss: {loss:.4f}")
    _say(f"Test accuracy: {acc:.4f} (the article: {article:.4f})")
    processes = f" x {distributed.size()} processes" if distributed.active() else ""
    _say(f"Training time: {train_seconds:.1f} s ({train_seconds / max(len(history.epoch), 1):.2f} s/epoch, "
         f"{fastnet.get_num_threads()} threads{processes})")

    os.makedirs(out, exist_ok=True)
    write_history(history, out, {
        **facts, "test_loss": loss, "test_accuracy": acc, "train_seconds": round(train_seconds, 2),
        "fastnet": fastnet.__version__, "gemm_kernel": fastnet._kernels.get_isa(), "machine": platform.machine()})
    model.save(os.path.join(out, "model.npz"))
    viz.save_image(viz.plot_history(history, title=f"{args.network.upper()}: test accuracy {acc:.4f}"),
                   os.path.join(out, "history.png"))
    viz.save_image(viz.plot_model(model), os.path.join(out, "model.png"))
    if args.export == "onnx":
        model.export(os.path.join(out, "model.onnx"))
    _say(f"Wrote {out}/history.json, history.csv, history.png, model.png and model.npz"
         + (", model.onnx" if args.export else ""))
    return 0


def show_main(argv=None):
    """`fastnet-show`: every MNIST digit in one grid (train and test) and the digits grouped by label."""
    p = argparse.ArgumentParser(prog="fastnet-show", description=(
        "Write mnist_train.png (all 60,000 training digits, 245x245 tiles: 6,860 px square), mnist_test.png "
        "(10,000 digits) and mnist_by_label.png (digits grouped by label)."))
    p.add_argument("--data", help="folder with the MNIST files or a Keras mnist.npz (default: FASTNET_DATA, the "
                                  "cache, then a download)")
    p.add_argument("--out", default=".", help="output folder (default: the current folder)")
    p.add_argument("--per-label", type=int, default=20, help="digits per label (default: %(default)s)")
    args = p.parse_args(argv)
    from fastnet.datasets import mnist

    (x_train, y_train), (x_test, _) = mnist.load_data(args.data)
    os.makedirs(args.out, exist_ok=True)
    for name, image in (("mnist_train.png", viz.digit_grid(x_train)), ("mnist_test.png", viz.digit_grid(x_test)),
                        ("mnist_by_label.png", viz.digits_by_label(x_train, y_train, args.per_label))):
        path = os.path.join(args.out, name)
        viz.save_image(image, path)
        print(f"Wrote {path} ({image.size[0]}x{image.size[1]} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
