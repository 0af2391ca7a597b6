"""The seed behind every random number fastnet draws (weights, dropout masks, shuffling).

Random numbers are keyed, not drawn from shared state: weights by (seed, model, layer), dropout by
(seed, model, training step, layer, element), shuffling by (seed, model, epochs completed), where step and epochs
are the model's own counters (saved with it), never a loop index that restarts with each fit call. A run is
therefore repeatable bit for bit, in one fit call or many, and the thread count does not change it.

Keys are hashed, never packed into bit fields: any number of models, steps and layers gets its own stream.
"""
import numpy as np

from fastnet import _check, _kernels

DEFAULT_SEED = 1337  # the seed of the article's scripts (np.random.seed(1337))
_seed = DEFAULT_SEED
_models_created = 0


def set_seed(seed):
    """Fix the seed for everything created from now on; models are numbered again from zero."""
    global _seed, _models_created
    _seed, _models_created = _check.integer(seed, "seed", 0, 2**63 - 1, "set_seed"), 0


def get_seed():
    return _seed


def next_model_key():
    """(seed, model number): the key of a new model's random streams."""
    global _models_created
    _models_created += 1
    return _seed, _models_created - 1


def generator(*key):
    """A counter-based (Philox) generator for a key of non-negative integers."""
    return np.random.Generator(np.random.Philox(np.random.SeedSequence([int(k) for k in key])))


key64 = _kernels.key64  # a 64-bit hash of a tuple of non-negative integers (the dropout masks' keys)
