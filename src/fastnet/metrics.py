"""The metrics compile() takes, by Keras's names: accuracies and the two regression errors.

A metric is summed over a batch's samples (every process's, data-parallel) and divided by the number of samples
at the end, like the loss; it is never weighted (Keras weighs metrics only through weighted_metrics).
'accuracy' (or 'acc') means what Keras 3 makes of it: binary accuracy when the model has one output,
categorical accuracy otherwise (sparse or not, they compare the same class indices here).
"""
import numpy as np

from fastnet import _check

# name -> (log key, kind); 'accuracy' and 'acc' are resolved at compile time
NAMES = ("accuracy", "acc", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
         "mean_absolute_error", "mae", "mean_squared_error", "mse")
_KINDS = {"binary_accuracy": "binary", "categorical_accuracy": "categorical",
          "sparse_categorical_accuracy": "categorical", "mean_absolute_error": "absolute", "mae": "absolute",
          "mean_squared_error": "squared", "mse": "squared"}


class Metric:
    """One metric: its name as given, its log keys and what it computes."""

    def __init__(self, name, kind):
        self.name, self.kind = name, kind
        # logged under its name as given (Keras 3); 'accuracy' also under 'acc', the Keras 2.0 key that
        # article-era plotting code reads (an alias: the progress line and evaluate leave it out)
        self.keys = (name, "acc") if name == "accuracy" else (name,)

    def batch_sum(self, out, probs, truth):
        """The metric summed over a batch: out the model's last layer output (logits when the loss takes the
        final activation over), probs the model's outputs, truth the unweighted targets [N, C]."""
        if self.kind == "categorical":
            return float(np.count_nonzero(out.argmax(1) == truth.argmax(1)))
        if self.kind == "binary":  # Keras: (pred > 0.5) == true, averaged over a sample's outputs
            return float(((probs > 0.5) == (truth > 0.5)).mean(axis=1, dtype=np.float64).sum())
        err = probs.astype(np.float64) - truth
        per = np.abs(err) if self.kind == "absolute" else err * err
        return float(per.mean(axis=1).sum())


def get(names, outputs, where="compile"):
    """The Metric objects for compile's metrics list and the model's number of outputs."""
    if names is None:
        return []
    if not isinstance(names, (list, tuple)):
        raise TypeError(f"{where}: metrics must be a list, e.g. metrics=['accuracy'], got {names!r}")
    found, keys = [], set()
    for name in names:
        _check.choice(name, "metric", NAMES, where)
        kind = _KINDS.get(name) or ("binary" if outputs == 1 else "categorical")
        metric = Metric(name, kind)
        if keys & set(metric.keys):
            raise ValueError(f"{where}: metric {name!r} is listed twice")
        keys.update(metric.keys)
        found.append(metric)
    return found


def aliases(metrics):
    """The log keys that repeat another metric's value under an older name ('acc', 'val_acc')."""
    return {prefix + key for m in metrics for key in m.keys[1:] for prefix in ("", "val_")}
