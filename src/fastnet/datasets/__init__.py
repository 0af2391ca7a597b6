"""Datasets, loaded exactly as Keras loads them."""
from fastnet.datasets import mnist
from fastnet.datasets._files import DatasetError

__all__ = ["mnist", "DatasetError"]
