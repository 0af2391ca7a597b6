"""The seed behind every random number fastnet draws (weights, dropout masks, shuffling).

Random numbers are keyed, not drawn from shared state: weights by (seed, model, layer), dropout by
(seed, model, training step, layer, element), shuffling by (seed, model, epochs completed), where step and epochs
are the model's own counters (saved with it), never a loop index that restarts with each fit call. A run is
therefore repeatable bit for bit, in one fit call or many, and the thread count does not change it.

Keys are hashed, never packed into bit fields: any number of models, steps and layers gets its own stream.
"""
import numpy as np

from fastnet import _check

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


_MASK64 = 2**64 - 1


def _splitmix64(z):
    """The splitmix64 finalizer: a bijection of 64-bit integers that mixes every input bit into every output bit."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def key64(*parts):
    """A 64-bit key for a tuple of non-negative integers of any size: each part is folded in 64 bits at a time,
    then its number of 64-bit chunks, so a value and its 64-bit truncation are hashed differently. Distinct tuples
    collide with the probability of a 64-bit hash (about n^2 / 2^65 for n keys)."""
    h = 0
    for part in parts:
        part = int(part)
        if part < 0:
            raise ValueError(f"key parts must be >= 0, got {part}")
        chunks = 0
        while True:
            h = _splitmix64(h ^ (part & _MASK64))
            part >>= 64
            chunks += 1
            if not part:
                break
        h = _splitmix64(h ^ chunks)
    return h
