"""Keras-style layers."""
from fastnet.layers.base import Layer, LegacyAPIWarning
from fastnet.layers.convolutional import Conv2D, Convolution2D
from fastnet.layers.core import Activation, Dense, Dropout, Flatten, LeakyReLU
from fastnet.layers.input_layer import Input, InputLayer
from fastnet.layers.pooling import MaxPool2D, MaxPooling2D

__all__ = ["Layer", "LegacyAPIWarning", "Input", "InputLayer", "Dense", "Activation", "LeakyReLU", "Dropout", "Flatten", "Conv2D", "Convolution2D",
           "MaxPooling2D", "MaxPool2D"]
