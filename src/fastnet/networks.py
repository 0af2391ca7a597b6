"""The article's two networks, with its hyperparameters (the defaults of `fastnet-train`)."""
from fastnet.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from fastnet.models import Sequential
from fastnet.optimizers import Adadelta, RMSprop

# name: (epochs, batch size, test accuracy the article reports)
RECIPES = {"mlp": (20, 128, 0.9843), "cnn": (12, 128, 0.9914)}


def mlp():
    """784-512-512-10, ReLU, Dropout 0.2, softmax; RMSprop (669,706 parameters)."""
    model = Sequential(name="mnist_mlp")
    model.add(Dense(512, input_shape=(784,)))
    model.add(Activation("relu"))
    model.add(Dropout(0.2))
    model.add(Dense(512))
    model.add(Activation("relu"))
    model.add(Dropout(0.2))
    model.add(Dense(10))
    model.add(Activation("softmax"))
    model.compile(loss="categorical_crossentropy", optimizer=RMSprop(), metrics=["accuracy"])
    return model


def cnn(data_format="channels_last"):
    """Conv 32 3x3 - Conv 32 3x3 - MaxPool 2x2 - Dropout 0.25 - Dense 128 - Dropout 0.5 - Dense 10; Adadelta
    (600,810 parameters)."""
    input_shape = (1, 28, 28) if data_format == "channels_first" else (28, 28, 1)
    model = Sequential(name="mnist_cnn")
    model.add(Conv2D(32, (3, 3), padding="valid", input_shape=input_shape, data_format=data_format))
    model.add(Activation("relu"))
    model.add(Conv2D(32, (3, 3)))
    model.add(Activation("relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Dropout(0.25))
    model.add(Flatten())
    model.add(Dense(128))
    model.add(Activation("relu"))
    model.add(Dropout(0.5))
    model.add(Dense(10))
    model.add(Activation("softmax"))
    model.compile(loss="categorical_crossentropy", optimizer=Adadelta(), metrics=["accuracy"])
    return model


def mnist_arrays(network, data_format="channels_last", path=None):
    """MNIST scaled to [0, 1] float32 and one-hot labels, shaped for the network."""
    from fastnet.datasets import mnist
    from fastnet.utils import to_categorical

    (x_train, y_train), (x_test, y_test) = mnist.load_data(path)
    if network == "mlp":
        shape = (784,)
    else:
        shape = (1, 28, 28) if data_format == "channels_first" else (28, 28, 1)
    x_train = x_train.reshape((-1,) + shape).astype("float32") / 255
    x_test = x_test.reshape((-1,) + shape).astype("float32") / 255
    return (x_train, to_categorical(y_train, 10)), (x_test, to_categorical(y_test, 10))
