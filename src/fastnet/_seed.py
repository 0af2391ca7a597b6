"""The seed behind every random number fastnet draws (weights, dropout masks, shuffling).

Random numbers are keyed, not drawn from shared state: weights by (seed, model, layer), dropout by
(seed, model, training step, layer, element), shuffling by (seed, model, epochs completed), where step and epochs
are the model's own counters (saved with it), never a loop index that restarts with each fit call. A run is
therefore repeatable bit for bit, in one fit call or many, and the thread count does not change it.
"""
import numpy as np

DEFAULT_SEED = 1337  # the seed of the article's scripts (np.random.seed(1337))
_seed = DEFAULT_SEED
_models_created = 0


def set_seed(seed):
    """Fix the seed for everything created from now on; models are numbered again from zero."""
    global _seed, _models_created
    seed = int(seed)
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    _seed, _models_created = seed, 0


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
