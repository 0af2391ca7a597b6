"""Optimizers with the Keras 2 update rules and the defaults of the article's time.

Each update is one fused C kernel over the model's whole parameter arena. Keras 1/2 spelled the learning
rate `lr`; tf.keras spells it `learning_rate`; both work. `decay` is Keras 2's time decay:
lr_t = lr / (1 + decay * iterations).
"""
import numpy as np

from fastnet import _check, _kernels


class Optimizer:
    slot_names = ()
    defaults = {}
    ranges = {}  # hyperparameter: (lo, hi, lo_open, hi_open), the values it may take

    def __init__(self, lr=None, learning_rate=None, decay=0.0, **hyper):
        where = type(self).__name__
        unknown = set(hyper) - set(self.defaults)
        if unknown:
            raise TypeError(f"{where} got unexpected arguments {sorted(unknown)}; "
                            f"it takes lr, decay and {', '.join(self.defaults)}")
        if lr is not None and learning_rate is not None:
            raise TypeError(f"{where}: pass lr or learning_rate, not both")
        name, lr = ("learning_rate", learning_rate) if learning_rate is not None else ("lr", lr)
        self.lr = _check.real(self.default_lr if lr is None else lr, name, 0.0, where=where)
        self.decay = _check.real(decay, "decay", 0.0, where=where)
        self.hyper = {}
        for key, default in self.defaults.items():
            value = hyper.get(key, default)
            if isinstance(default, bool):
                self.hyper[key] = _check.boolean(value, key, where)
            else:
                lo, hi, lo_open, hi_open = self.ranges[key]
                self.hyper[key] = _check.real(value, key, lo, hi, lo_open, hi_open, where)
        self._iterations = np.zeros(1, np.int64)  # advanced by the update kernel itself (see apply)
        self.slots = []

    @property
    def learning_rate(self):
        return self.lr

    @property
    def iterations(self):
        """Updates applied so far."""
        return int(self._iterations[0])

    @iterations.setter
    def iterations(self, value):
        self._iterations[0] = _check.integer(value, "iterations", 0, where=type(self).__name__)

    def build(self, n_params):
        """Zeroed state for n_params parameters (kept if already built for that size)."""
        if not self.slots or self.slots[0].size != n_params:
            self.slots = [np.zeros(n_params, np.float32) for _ in self.slot_names]

    def kernel_hyper(self):
        """The update kernel's hyperparameters besides the learning rate (Program.train_step's hyper)."""
        return tuple(float(self.hyper[k]) for k in self.kernel_args) + (0.0,) * (3 - len(self.kernel_args))

    def current_lr(self):
        return self.lr / (1.0 + self.decay * self.iterations) if self.decay else self.lr

    def apply(self, params, grads, n_threads=None, counters=()):
        """One step over the flat parameter arena. The kernel that makes it also advances self.iterations and the
        caller's counters (1-element int64 arrays): an interrupt never separates the step from its count."""
        counters = tuple(counters) + (self._iterations,)
        if params.size == 0:  # a model without weights (only Dropout, Activation, ...): a step that updates nothing
            for c in counters:
                c[0] += 1
            return
        self._update(params, grads, self.current_lr(), n_threads, counters)

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
    ranges = {"momentum": (0.0, 1.0, False, False)}
    slot_names = ("velocity",)
    kernel, kernel_args = "sgd", ("momentum", "nesterov")

    def _update(self, p, g, lr, n_threads, counters):
        _kernels.sgd_update(p, self.slots[0], g, lr, self.hyper["momentum"], self.hyper["nesterov"],
                            n_threads=n_threads, counters=counters)


class RMSprop(Optimizer):
    default_lr = 0.001
    defaults = {"rho": 0.9, "epsilon": 1e-7}
    ranges = {"rho": (0.0, 1.0, False, False), "epsilon": (0.0, None, True, False)}
    slot_names = ("accumulator",)
    kernel, kernel_args = "rmsprop", ("rho", "epsilon")

    def _update(self, p, g, lr, n_threads, counters):
        _kernels.rmsprop_update(p, self.slots[0], g, lr, self.hyper["rho"], self.hyper["epsilon"], n_threads=n_threads,
                                counters=counters)


class Adadelta(Optimizer):
    """lr defaults to 1.0 as in Keras 2 (tf.keras later changed it to 0.001, and the CNN then reaches ~84 %)."""

    default_lr = 1.0
    defaults = {"rho": 0.95, "epsilon": 1e-7}
    ranges = RMSprop.ranges
    slot_names = ("accumulator", "delta_accumulator")
    kernel, kernel_args = "adadelta", ("rho", "epsilon")

    def _update(self, p, g, lr, n_threads, counters):
        _kernels.adadelta_update(p, self.slots[0], self.slots[1], g, lr, self.hyper["rho"], self.hyper["epsilon"],
                                 n_threads=n_threads, counters=counters)


class Adam(Optimizer):
    default_lr = 0.001
    defaults = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
    ranges = {"beta_1": (0.0, 1.0, False, True), "beta_2": (0.0, 1.0, False, True),
              "epsilon": (0.0, None, True, False)}  # beta = 1 divides by 1 - beta^t = 0
    slot_names = ("m", "v")
    kernel, kernel_args = "adam", ("beta_1", "beta_2", "epsilon")

    def _update(self, p, g, lr, n_threads, counters):
        h = self.hyper
        _kernels.adam_update(p, self.slots[0], self.slots[1], g, lr, h["beta_1"], h["beta_2"], h["epsilon"],
                             self.iterations + 1, n_threads=n_threads, counters=counters)


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
        name, config = identifier.get("class_name"), identifier.get("config", {})
        if not isinstance(name, str) or name.lower() not in ALL or not isinstance(config, dict):
            raise ValueError(f"optimizer config must be {{'class_name': one of {sorted(ALL)}, 'config': {{...}}}}, "
                             f"got {identifier!r}")
        return ALL[name.lower()].from_config(config)
    raise TypeError(f"optimizer must be a name or an Optimizer, got {type(identifier).__name__}")


def serialize(optimizer):
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}
