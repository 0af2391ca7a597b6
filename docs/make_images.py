"""Make the README's pictures (kept small) from MNIST and from fastnet-train's output folders.

    python docs/make_images.py --runs runs          # after fastnet-train mlp / cnn wrote runs/mlp, runs/cnn

The full-size pictures come from the commands themselves: `fastnet-show` (mnist_train.png is 6,860 px square)
and `fastnet-train` (history.png, model.png).
"""
import argparse
import os

from PIL import Image

from fastnet import viz
from fastnet.datasets import mnist


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs", help="folder holding fastnet-train's mlp/ and cnn/ outputs")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "images"))
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    (x_train, y_train), (x_test, _) = mnist.load_data()

    full = viz.digit_grid(x_train)  # 245 x 245 digits, 6,860 px
    small = full.resize((980, 980), Image.LANCZOS)  # each digit 4 px: the whole set at a glance
    viz.save_image(small, os.path.join(args.out, "mnist_train_all_980px.png"))
    viz.save_image(full.crop((0, 0, 28 * 30, 28 * 12)), os.path.join(args.out, "mnist_train_first_360.png"))
    viz.save_image(viz.digit_grid(x_test).resize((700, 700), Image.LANCZOS),
                   os.path.join(args.out, "mnist_test_all_700px.png"))
    viz.save_image(viz.digits_by_label(x_train, y_train, per_label=20), os.path.join(args.out, "mnist_by_label.png"))
    for net in ("mlp", "cnn"):
        folder = os.path.join(args.runs, net)
        if os.path.exists(os.path.join(folder, "history.json")):
            viz.save_image(viz.plot_history(os.path.join(folder, "history.json"), title=f"{net.upper()} on MNIST"),
                           os.path.join(args.out, f"{net}_history.png"))
        if os.path.exists(os.path.join(folder, "model.png")):
            Image.open(os.path.join(folder, "model.png")).save(os.path.join(args.out, f"{net}_model.png"))
    for name in sorted(os.listdir(args.out)):
        print(name, os.path.getsize(os.path.join(args.out, name)) // 1024, "KiB")


if __name__ == "__main__":
    main()
