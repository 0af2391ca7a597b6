"""Pictures with Pillow alone: digit grids, digits by label, training curves and the model diagram."""
import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fastnet import _check


def _font(size):
    try:
        return ImageFont.load_default(size=size)  # scalable with FreeType (Pillow >= 10.1)
    except TypeError:
        return ImageFont.load_default()


def _as_uint8_images(images):
    images = np.asarray(images)
    if images.dtype == object or not (np.issubdtype(images.dtype, np.number) or images.dtype == bool):
        raise TypeError(f"images must be numeric, got dtype {images.dtype}")
    if images.size == 0:
        raise ValueError(f"images is empty (shape {images.shape}): nothing to draw")
    if not np.isfinite(images).all():
        raise ValueError("images contain NaN or inf")
    if images.ndim == 4 and 1 in (images.shape[1], images.shape[3]):  # (N, 1, H, W) or (N, H, W, 1)
        spatial = images.shape[2:] if images.shape[1] == 1 else images.shape[1:3]
        images = images.reshape(images.shape[0], *spatial)
    if images.ndim != 3:
        raise ValueError(f"expected images of shape (N, rows, cols) (or with one channel axis), got {images.shape}")
    if images.dtype != np.uint8:
        lo, hi = float(images.min()), float(images.max())
        scale = 255.0 if hi <= 1.0 and lo >= 0.0 else 255.0 / max(hi - lo, 1e-12)
        images = np.clip((images - (0.0 if hi <= 1.0 and lo >= 0.0 else lo)) * scale + 0.5, 0, 255).astype(np.uint8)
    return images


def tile(images, cols, rows=None):
    """Images (N, h, w) tiled row by row into a (rows*h, cols*w) array, blank where the grid runs out."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"tile: expected images of shape (N, rows, cols), got {images.shape}")
    n, h, w = images.shape
    cols = _check.integer(cols, "cols", 1, where="tile")
    rows = max(1, math.ceil(n / cols)) if rows is None else _check.integer(rows, "rows", 1, where="tile")
    if rows * cols < n:
        raise ValueError(f"tile: a {rows}x{cols} grid holds {rows * cols} images, not {n}")
    padded = np.zeros((rows * cols, h, w), dtype=images.dtype)
    padded[:n] = images
    return padded.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)


def digit_grid(images):
    """All images in data order in a ceil(sqrt(N))-square grid (60,000 MNIST digits: 6,860 x 6,860 px)."""
    images = _as_uint8_images(images)
    side = max(1, math.ceil(math.sqrt(images.shape[0])))
    return Image.fromarray(tile(images, side, side), mode="L")


def digits_by_label(images, labels, per_label=20, label_width=24):
    """One row per class (0-9 for MNIST): the first `per_label` digits of each label, the label on the left."""
    images = _as_uint8_images(images)
    per_label = _check.integer(per_label, "per_label", 1, where="digits_by_label")
    label_width = _check.integer(label_width, "label_width", 0, where="digits_by_label")
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    classes = np.unique(labels)
    h, w = images.shape[1:]
    canvas = Image.new("L", (label_width + per_label * w, len(classes) * h), 0)
    draw = ImageDraw.Draw(canvas)
    font = _font(max(10, h // 2))
    for row, c in enumerate(classes):
        chosen = images[labels == c][:per_label]
        canvas.paste(Image.fromarray(tile(chosen, per_label), mode="L"), (label_width, row * h))
        draw.text((label_width // 2, row * h + h // 2), str(c), fill=255, font=font, anchor="mm")
    return canvas


# ---- training curves ----

def _history_dict(history):
    if hasattr(history, "history"):
        return dict(history.history)
    if isinstance(history, (str, os.PathLike)):
        with open(history) as f:
            history = json.load(f)
    if isinstance(history, dict) and "history" in history and isinstance(history["history"], dict):
        return dict(history["history"])
    if isinstance(history, dict):
        return dict(history)
    raise TypeError(f"expected a History, a history dict or a history JSON path, got {type(history).__name__}")


def _nice_ticks(lo, hi, count=5):
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = [round(start, 10)]
    while ticks[-1] < hi - step * 1e-9:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


COLORS = {"train": (31, 119, 180), "validation": (255, 127, 14)}


def _panel(draw, box, title, series, font, small):
    """One chart: axes, ticks, grid, lines with markers, legend. series: {label: [values per epoch]}."""
    x0, y0, x1, y1 = box
    left, bottom, top, right = x0 + 62, y1 - 42, y0 + 56, x1 - 16
    draw.text(((x0 + x1) // 2, y0 + 14), title, fill=(0, 0, 0), font=font, anchor="mm")
    values = [v for vs in series.values() for v in vs]
    n = max(len(vs) for vs in series.values())
    ticks = _nice_ticks(min(values), max(values))
    lo, hi = ticks[0], ticks[-1]
    xs = lambda i: left + (right - left) * (i / max(n - 1, 1))  # noqa: E731
    ys = lambda v: bottom - (bottom - top) * ((v - lo) / (hi - lo))  # noqa: E731
    for t in ticks:
        y = ys(t)
        draw.line([(left, y), (right, y)], fill=(228, 228, 228))
        draw.text((left - 6, y), f"{t:g}", fill=(0, 0, 0), font=small, anchor="rm")
    step = max(1, math.ceil(n / 10))
    for i in range(0, n, step):
        x = xs(i)
        draw.line([(x, bottom), (x, bottom + 4)], fill=(0, 0, 0))
        draw.text((x, bottom + 7), str(i + 1), fill=(0, 0, 0), font=small, anchor="mt")
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    draw.text(((left + right) // 2, y1 - 14), "epoch", fill=(0, 0, 0), font=small, anchor="mm")
    for k, (label, vs) in enumerate(series.items()):
        color = COLORS[label]
        points = [(xs(i), ys(v)) for i, v in enumerate(vs)]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
        lx, ly = left + 10 + 120 * k, top - 14  # legend above the plot area: it never hides a line
        draw.line([(lx, ly), (lx + 20, ly)], fill=color, width=3)
        draw.text((lx + 26, ly), label, fill=(0, 0, 0), font=small, anchor="lm")


def plot_history(history, title=None, size=(1000, 420)):
    """Loss and accuracy per epoch, training vs validation, side by side."""
    h = _history_dict(history)
    panels = []
    for key, name in (("loss", "loss"), ("accuracy", "accuracy")):
        if key == "accuracy" and "accuracy" not in h and "acc" in h:
            key = "acc"
        series = {}
        if h.get(key):
            series["train"] = [float(v) for v in h[key]]
        if h.get("val_" + key):
            series["validation"] = [float(v) for v in h["val_" + key]]
        if series:
            panels.append((name, series))
    if not panels:
        raise ValueError(f"the history has no loss or accuracy values (keys: {sorted(h)})")
    width, height = _check.ints(size, "size", 2, lo=100, hi=20_000, where="plot_history")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"plot_history: title must be a string, got {type(title).__name__}")
    image = Image.new("RGB", (width, height + (30 if title else 0)), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font, small = _font(16), _font(12)
    offset = 0
    if title:
        draw.text((width // 2, 16), title, fill=(0, 0, 0), font=_font(18), anchor="mm")
        offset = 30
    pw = width // len(panels)
    for i, (name, series) in enumerate(panels):
        _panel(draw, (i * pw, offset, (i + 1) * pw, offset + height), f"model {name}", series, font, small)
    return image


# ---- model diagram ----

def _shape_text(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def plot_model(model, show_shapes=True):
    """The layer diagram Keras's plot_model(show_shapes=True) draws: a box per layer with its name, type,
    input and output shapes, joined by arrows from the input layer down."""
    if not hasattr(model, "layers") or not hasattr(model, "input_shape"):
        raise TypeError(f"plot_model: expected a fastnet Sequential, got {type(model).__name__}")
    if not model.layers:
        raise ValueError("the model has no layers")
    first = model.layers[0]
    nodes = [(f"{first.name}_input", "InputLayer", model.input_shape, model.input_shape)]
    nodes += [(l.name, type(l).__name__, l.input_shape, l.output_shape) for l in model.layers]
    font = _font(14)
    pad, gap, arrow = 10, 36, 8
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    texts = []
    for name, kind, shape_in, shape_out in nodes:
        head = f"{name}: {kind}"
        io = [f"input: {_shape_text(shape_in)}", f"output: {_shape_text(shape_out)}"] if show_shapes else []
        texts.append((head, io))
    def text_w(t):
        return probe.textbbox((0, 0), t, font=font)[2]
    head_w = max(text_w(h) for h, _ in texts) + 2 * pad
    io_w = max([text_w(t) for _, io in texts for t in io] or [0]) + 2 * pad
    box_w, line_h = head_w + (io_w if show_shapes else 0), 20
    box_h = 2 * line_h + 2 * pad if show_shapes else line_h + 2 * pad
    width = box_w + 40
    height = len(nodes) * box_h + (len(nodes) - 1) * gap + 40
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    x0 = 20
    for i, (head, io) in enumerate(texts):
        y0 = 20 + i * (box_h + gap)
        draw.rectangle([x0, y0, x0 + box_w, y0 + box_h], outline=(0, 0, 0), fill=(250, 250, 250), width=2)
        draw.text((x0 + pad, y0 + box_h // 2), head, fill=(0, 0, 0), font=font, anchor="lm")
        if show_shapes:
            xs = x0 + head_w
            draw.line([(xs, y0), (xs, y0 + box_h)], fill=(0, 0, 0), width=1)
            draw.line([(xs, y0 + box_h // 2), (x0 + box_w, y0 + box_h // 2)], fill=(0, 0, 0), width=1)
            for k, t in enumerate(io):
                draw.text((xs + pad, y0 + box_h // 4 + k * box_h // 2), t, fill=(0, 0, 0), font=font, anchor="lm")
        if i + 1 < len(texts):
            cx, ya, yb = x0 + box_w // 2, y0 + box_h, y0 + box_h + gap
            draw.line([(cx, ya), (cx, yb - 1)], fill=(0, 0, 0), width=2)
            draw.polygon([(cx - arrow, yb - arrow - 1), (cx + arrow, yb - arrow - 1), (cx, yb - 1)], fill=(0, 0, 0))
    return image


def save_image(image, path):
    """Write a PNG atomically."""
    from fastnet._io import atomic_write

    if not isinstance(image, Image.Image):
        raise TypeError(f"save_image: expected a PIL image, got {type(image).__name__}")
    atomic_write(_check.path(path, "path", "save_image"), lambda f: image.save(f, format="PNG"))
