"""Optimizers with the Keras 2 update rules and the defaults of the article's time.

Each update is one fused C kernel over the model's whole parameter arena. Keras 1/2 spelled the learning
rate `lr`; tf.keras spells it `learning_rate`; both work. `decay` is Keras 2's time decay:
lr_t = lr / (1 + decay * iterations).
"""
import numpy as np

from fastnet import _kernels


class Optimizer:
    slot_names = ()
    defaults = {}

    def __init__(self, lr=None, learning_rate=None, decay=0.0, **hyper):
        unknown = set(hyper) - set(self.defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(unknown)}; "
                            f"it takes lr, decay and {', '.join(self.defaults)}")
        if lr is not None and learning_rate is not None:
            raise TypeError("pass lr or learning_rate, not both")
        self.lr = float(self.default_lr if lr is None and learning_rate is None else lr if lr is not None
                        else learning_rate)
        self.decay = float(decay)
        self.hyper = {k: hyper.get(k, v) for k, v in self.defaults.items()}
        if self.lr < 0 or self.decay < 0:
            raise ValueError(f"learning rate and decay must be >= 0, got lr={self.lr}, decay={self.decay}")
        self.iterations = 0
        self.slots = []

    @property
    def learning_rate(self):
        return self.lr

    def build(self, n_params):
        """Zeroed state for n_params parameters (kept if already built for that size)."""
        if not self.slots or self.slots[0].size != n_params:
            self.slots = [np.zeros(n_params, np.float32) for _ in self.slot_names]

    def current_lr(self):
        return self.lr / (1.0 + self.decay * self.iterations) if self.decay else self.lr

    def apply(self, params, grads, n_threads=None):
        """One step over the flat parameter arena."""
        self._update(params, grads, self.current_lr(), n_threads)
        self.iterations += 1

    def get_config(self):
        return {"lr": self.lr, "decay": self.decay, **self.hyper}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    default_lr = 0.01
    defaults = {"momentum": 0.0, "nesterov": False}
    slot_names = ("velocity",)

    def _update(self, p, g, lr, n_threads):
        _kernels.sgd_update(p, self.slots[0], g, lr, self.hyper["momentum"], self.hyper["nesterov"],
                            n_threads=n_threads)


class RMSprop(Optimizer):
    default_lr = 0.001
    defaults = {"rho": 0.9, "epsilon": 1e-7}
    slot_names = ("accumulator",)

    def _update(self, p, g, lr, n_threads):
        _kernels.rmsprop_update(p, self.slots[0], g, lr, self.hyper["rho"], self.hyper["epsilon"], n_threads=n_threads)


class Adadelta(Optimizer):
    """lr defaults to 1.0 as in Keras 2 (tf.keras later changed it to 0.001, and the CNN then reaches ~84 %)."""

    default_lr = 1.0
    defaults = {"rho": 0.95, "epsilon": 1e-7}
    slot_names = ("accumulator", "delta_accumulator")

    def _update(self, p, g, lr, n_threads):
        _kernels.adadelta_update(p, self.slots[0], self.slots[1], g, lr, self.hyper["rho"], self.hyper["epsilon"],
                                 n_threads=n_threads)


class Adam(Optimizer):
    default_lr = 0.001
    defaults = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
    slot_names = ("m", "v")

    def _update(self, p, g, lr, n_threads):
        h = self.hyper
        _kernels.adam_update(p, self.slots[0], self.slots[1], g, lr, h["beta_1"], h["beta_2"], h["epsilon"],
                             self.iterations + 1, n_threads=n_threads)


ALL = {"sgd": SGD, "rmsprop": RMSprop, "adadelta": Adadelta, "adam": Adam}


def get(identifier):
    """An optimizer from an instance, a name ('rmsprop', 'adadelta', 'sgd', 'adam') or a config dict."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in ALL:
            raise ValueError(f"unknown optimizer {identifier!r}; fastnet has {', '.join(ALL)}")
        return ALL[key]()
    if isinstance(identifier, dict):
        return ALL[identifier["class_name"].lower()].from_config(identifier.get("config", {}))
    raise TypeError(f"optimizer must be a name or an Optimizer, got {type(identifier).__name__}")


def serialize(optimizer):
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}
