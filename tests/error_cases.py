"""Bad input and the error it gets: the cases behind docs/ERRORS.md.

Each case is code a user might write, the exception fastnet must raise and a pattern its message must match.
tests/test_errors.py runs every case; docs/make_errors.py runs them again and writes docs/ERRORS.md from the
messages they print, so the document shows what fastnet says, never what someone typed.

The code runs in a namespace (NAMESPACE below) where `mlp` is a compiled 784-16-10 MLP, `cnn` a compiled
channels_first CNN on (1, 28, 28) images, `x` four flat images (4, 784), `images` four channels_last images
(4, 28, 28, 1), `y` their one-hot labels (4, 10), `labels` the same as integers, and `tmp` an empty folder.
"""
import contextlib
import gzip
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass

import numpy as np

import fastnet
import fastnet.keras_format  # noqa: F401  (fastnet.keras_format in the cases)
import fastnet.viz  # noqa: F401  (fastnet.viz in the cases)
import model_files
from fastnet import _kernels, backend, callbacks, optimizers
from fastnet.datasets import mnist
from fastnet.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPooling2D


@dataclass(frozen=True)
class Case:
    title: str       # the bad input, in words
    code: str        # what the user runs (shown in docs/ERRORS.md)
    error: type      # the exception fastnet must raise
    match: str       # a regular expression its message must contain
    setup: str = ""  # code run first, not shown (files to read, ...)


def _idx(array):
    return mnist.to_idx(np.asarray(array, np.uint8))


def write_mnist(folder, images=None, gz_images=None):
    """Four IDX files of the right structure (a few images, so not the MNIST release); images replaces the
    training images' bytes, gz_images their gzip bytes."""
    os.makedirs(folder, exist_ok=True)
    x, y = np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.uint8)
    blobs = {"train-images-idx3-ubyte": _idx(x) if images is None else images, "train-labels-idx1-ubyte": _idx(y),
             "t10k-images-idx3-ubyte": _idx(x), "t10k-labels-idx1-ubyte": _idx(y)}
    for name, data in blobs.items():
        with open(os.path.join(folder, name + ".gz"), "wb") as f:
            f.write(gz_images if name == "train-images-idx3-ubyte" and gz_images is not None else gzip.compress(data))


def _models():
    fastnet.set_seed(1)
    mlp = fastnet.Sequential([Dense(16, activation="relu", input_shape=(784,)), Dense(10, activation="softmax")])
    mlp.compile(loss="categorical_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    cnn = fastnet.Sequential([Conv2D(4, (3, 3), activation="relu", input_shape=(1, 28, 28),
                                     data_format="channels_first"), Flatten(), Dense(10, activation="softmax")])
    cnn.compile(loss="categorical_crossentropy", optimizer="adadelta", metrics=["accuracy"])
    return mlp, cnn


def keras_file(model, path, edit):
    """model saved as a .keras archive at path, with edit(config) applied to its config.json (a file Keras might
    have written, for a model fastnet cannot represent)."""
    model.save(path + ".tmp.keras")
    with zipfile.ZipFile(path + ".tmp.keras") as z:
        files = {name: z.read(name) for name in z.namelist()}
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)


def _edit_layer(index, **changes):
    def edit(config):
        layer = config["config"]["layers"][index]
        layer.update({k: v for k, v in changes.items() if k == "class_name"})
        layer["config"].update({k: v for k, v in changes.items() if k != "class_name"})
    return edit


def edit_file(source, target, keras=None, h5=None):
    """target: the model file source with an edit of its HDF5 (model_files.edit_h5) applied."""
    with open(source, "rb") as f:
        blob = f.read()
    with open(target, "wb") as f:
        f.write(model_files.edit_keras_weights(blob, keras) if keras else model_files.edit_h5(blob, h5))


def NAMESPACE(tmp):
    mlp, cnn = _models()
    rng = np.random.default_rng(0)
    labels = np.array([3, 1, 4, 1])
    return {"np": np, "fastnet": fastnet, "optimizers": optimizers, "callbacks": callbacks, "_kernels": _kernels,
            "mnist": mnist, "Sequential": fastnet.Sequential, "Dense": Dense, "Conv2D": Conv2D,
            "MaxPooling2D": MaxPooling2D, "Dropout": Dropout, "Flatten": Flatten, "Activation": Activation,
            "mlp": mlp, "cnn": cnn, "x": rng.random((4, 784), dtype=np.float32),
            "images": rng.random((4, 28, 28, 1), dtype=np.float32), "y": np.eye(10, dtype=np.float32)[labels],
            "labels": labels, "tmp": tmp, "write_mnist": write_mnist, "_idx": _idx, "os": os, "gzip": gzip,
            "keras_file": keras_file, "_edit_layer": _edit_layer, "mf": model_files, "edit_file": edit_file}


CASES = [
    # ---- layers: every constructor argument ----
    Case("zero channels in input_shape", "Conv2D(4, (3, 3), input_shape=(5, 5, 0))", ValueError,
         r"Conv2D: input_shape\[2\] must be >= 1, got 0"),
    Case("an empty feature axis (a softmax over nothing)", "Activation('softmax', input_shape=(0,))", ValueError,
         r"Activation: input_shape\[0\] must be >= 1, got 0"),
    Case("strides=0", "Conv2D(32, (3, 3), strides=0)", ValueError, r"Conv2D: strides must be >= 1, got 0"),
    Case("a kernel size of 0", "Conv2D(32, (3, 0))", ValueError, r"Conv2D: kernel_size\[1\] must be >= 1, got 0"),
    Case("padding that is not 'valid' or 'same'", "Conv2D(32, (3, 3), padding='full')", ValueError,
         r"Conv2D: padding must be one of 'valid', 'same'; got 'full'"),
    Case("an unknown data_format", "Conv2D(32, (3, 3), data_format='nchw')", ValueError,
         r"data_format must be 'channels_first' or 'channels_last'.*got 'nchw'"),
    Case("a pool size of 0", "MaxPooling2D(pool_size=(2, 0))", ValueError,
         r"MaxPooling2D: pool_size\[1\] must be >= 1, got 0"),
    Case("zero units", "Dense(0)", ValueError, r"Dense: units must be >= 1, got 0"),
    Case("a fractional number of units", "Dense(2.5)", ValueError, r"Dense: units must be a whole number, got 2.5"),
    Case("units as a string", "Dense('512')", TypeError, r"Dense: units must be an int, got str '512'"),
    Case("a dropout rate of 1", "Dropout(1.0)", ValueError, r"Dropout: rate must be in \[0, 1\), got 1.0"),
    Case("a negative dropout rate", "Dropout(-0.1)", ValueError, r"Dropout: rate must be in \[0, 1\), got -0.1"),
    Case("an unknown activation", "Dense(10, activation='gelu')", ValueError,
         r"Dense: unknown activation 'gelu'; fastnet has linear, relu, sigmoid, tanh, softmax"),
    Case("an unknown initializer", "Dense(10, kernel_initializer='orthogonal')", ValueError,
         r"Dense: kernel_initializer must be one of 'glorot_uniform'.*got 'orthogonal'"),
    Case("trainable=False", "Dense(10, trainable=False)", ValueError, r"trainable=False is not supported"),
    Case("a dtype policy fastnet lacks", "Dense(10, dtype='float64')", ValueError,
         r"Dense: unknown dtype policy 'float64'; fastnet has 'float32', 'mixed_bfloat16'"),
    Case("half precision as the global policy", "fastnet.mixed_precision.set_global_policy('mixed_float16')",
         ValueError, r"unknown dtype policy 'mixed_float16'; .*half precision is not fast on CPUs: use 'mixed_bfloat16'"),
    Case("kernel: an unknown precision", "_kernels.gemm(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32), "
         "precision='float16')", ValueError, r"unknown precision 'float16'; expected one of \('float32', 'bfloat16'\)"),
    # ---- optimizers ----
    Case("a NaN learning rate", "optimizers.SGD(lr=float('nan'))", ValueError, r"SGD: lr must be a finite number, got nan"),
    Case("a negative learning rate", "optimizers.Adadelta(learning_rate=-1)", ValueError,
         r"Adadelta: learning_rate must be >= 0, got -1.0"),
    Case("rho outside [0, 1]", "optimizers.RMSprop(rho=1.5)", ValueError, r"RMSprop: rho must be in \[0, 1\], got 1.5"),
    Case("epsilon = 0 (0/0 where a gradient is 0)", "optimizers.RMSprop(epsilon=0)", ValueError,
         r"RMSprop: epsilon must be > 0, got 0.0"),
    Case("beta_1 = 1 (divides by 1 - beta_1^t = 0)", "optimizers.Adam(beta_1=1.0)", ValueError,
         r"Adam: beta_1 must be in \[0, 1\), got 1.0"),
    Case("momentum outside [0, 1]", "optimizers.SGD(momentum=-0.5)", ValueError,
         r"SGD: momentum must be in \[0, 1\], got -0.5"),
    # ---- compile and fit ----
    Case("an unknown loss", "mlp.compile(loss='hinge', optimizer='rmsprop')", ValueError,
         r"compile: unknown loss 'hinge'; fastnet has categorical_crossentropy, sparse_categorical_crossentropy, "
         r"mean_squared_error"),
    Case("an unknown optimizer", "mlp.compile(optimizer='adamw')", ValueError, r"unknown optimizer 'adamw'"),
    Case("metrics as a string", "mlp.compile(metrics='accuracy')", TypeError,
         r"compile: metrics must be a list, e.g. metrics=\['accuracy'\]"),
    Case("an unknown metric", "mlp.compile(metrics=['auc'])", ValueError,
         r"compile: metric must be one of 'accuracy', 'acc', 'binary_accuracy', .*; got 'auc'"),
    Case("a metric listed twice", "mlp.compile(metrics=['accuracy', 'acc'])", ValueError,
         r"compile: metric 'acc' is listed twice"),
    Case("a loss for a model without flat outputs", "fastnet.models.Sequential([fastnet.layers.Conv2D(2, 3, "
         "input_shape=(5, 5, 1))]).compile(loss='mse')", ValueError,
         r"compile: mse needs a model output of shape \(None, outputs\); the model outputs \(None, 3, 3, 2\)"),
    Case("mse targets of the wrong width", "mlp.compile(loss='mse'); mlp.fit(np.zeros((4, 784)), np.zeros((4, 3)))",
         ValueError, r"fit: targets have shape \(4, 3\) but the model outputs \(None, 10\): expected \(N, 10\)"),
    Case("fit before compile", "Sequential([Dense(10, input_shape=(784,))]).fit(x, y)", RuntimeError,
         r"fit needs a compiled model: call model.compile\(loss=..., optimizer=...\) first"),
    Case("channels_last data into a channels_first model", "cnn.fit(images, y)", ValueError,
         r"the model expects input of shape \(N, 1, 28, 28\) \(channels_first\), got \(4, 28, 28, 1\). This looks "
         r"channels_last"),
    Case("input_shape=(1, 28, 28) once channels_last is chosen",
         "fastnet.backend.set_image_data_format('channels_last'); Sequential([Conv2D(32, (3, 3), input_shape=(1, 28, 28))])",
         ValueError, r"read as channels_last is 1 rows x 28 cols with 28 channel\(s\), smaller than the 3x3 kernel.*"
         r"looks channels_first"),
    Case("flat data into the CNN", "cnn.predict(x)", ValueError, r"Reshape it with x.reshape\(-1, 1, 28, 28\)"),
    Case("strings as data", "mlp.predict(np.array([['a'] * 784]))", TypeError, r"predict: x must be numeric, got dtype <U1"),
    Case("NaN in x", "x[0, 0] = np.nan; mlp.fit(x, y)", ValueError,
         r"fit: x contains NaN or inf \(first at index \(0, 0\)\)"),
    Case("integer labels with categorical_crossentropy", "mlp.fit(x, labels)", ValueError,
         r"categorical_crossentropy needs one-hot targets of shape \(N, 10\), got \(4,\): use "
         r"fastnet.utils.to_categorical"),
    Case("labels out of range (sparse)", "mlp.compile(loss='sparse_categorical_crossentropy'); mlp.fit(x, labels + 9)",
         ValueError, r"fit: labels must be in \[0, 10\), got values in \[10, 13\]"),
    Case("y longer than x", "mlp.fit(x[:3], y)", ValueError, r"fit: x has 3 samples but y has 4; they must match"),
    Case("batch_size=0", "mlp.fit(x, y, batch_size=0)", ValueError, r"fit: batch_size must be >= 1, got 0"),
    Case("batch_size as a float", "mlp.fit(x, y, batch_size=12.5)", TypeError,
         r"fit: batch_size must be an int, got float 12.5"),
    Case("empty data", "mlp.fit(x[:0], y[:0])", ValueError, r"fit: x is empty \(0 samples\)"),
    Case("negative epochs", "mlp.fit(x, y, epochs=-1)", ValueError, r"fit: epochs must be >= 0, got -1"),
    Case("initial_epoch past epochs", "mlp.fit(x, y, epochs=2, initial_epoch=5)", ValueError,
         r"fit: initial_epoch must be in \[0, 2\], got 5"),
    Case("validation_split=1", "mlp.fit(x, y, validation_split=1.0)", ValueError,
         r"fit: validation_split must be in \[0, 1\), got 1.0"),
    Case("validation_data that is not a pair", "mlp.fit(x, y, validation_data=(x,))", ValueError,
         r"fit: validation_data must be a pair \(x_val, y_val\) or a triple \(x_val, y_val, sample_weight_val\), "
         r"got tuple of length 1"),
    Case("verbose=3", "mlp.fit(x, y, verbose=3)", ValueError, r"fit: verbose must be in \[0, 2\], got 3"),
    Case("a callback not in a list", "mlp.fit(x, y, callbacks=callbacks.EarlyStopping())", TypeError,
         r"fit: callbacks must be a list of fastnet.callbacks.Callback, got EarlyStopping"),
    Case("EarlyStopping on a value fit does not log", "mlp.fit(x, y, verbose=0, callbacks=[callbacks.EarlyStopping()])",
         ValueError, r"EarlyStopping monitors 'val_loss', which fit does not report"),
    Case("a log inside a file, found when training begins",
         "mlp.fit(x, y, verbose=0, callbacks=[callbacks.CSVLogger(tmp + '/blocker/log.csv')])", NotADirectoryError,
         r"CSVLogger: cannot write .*/blocker/log.csv: .*/blocker is a file, not a folder",
         setup="open(tmp + '/blocker', 'w').close()"),
    Case("a checkpoint in Keras 2's .hdf5", "callbacks.ModelCheckpoint('weights.{epoch:02d}.hdf5')", ValueError,
         r"ModelCheckpoint: 'weights.\{epoch:02d\}.hdf5': fastnet saves checkpoints as .keras \(Keras 3's format\) "
         r"or .npz \(fastnet's own, exact resume\) \(Keras 2's .h5/.hdf5 model files are not supported\)"),
    Case("a weights-only checkpoint without .weights.h5",
         "callbacks.ModelCheckpoint('w.{epoch}.keras', save_weights_only=True)", ValueError,
         r"ModelCheckpoint: 'w.\{epoch\}.keras': with save_weights_only=True the file name must end in .weights.h5"),
    Case("a checkpoint name with a value fit does not log",
         "mlp.fit(x, y, verbose=0, callbacks=[callbacks.ModelCheckpoint(tmp + '/ckpt-{val_loss:.2f}.npz')])",
         ValueError, r"ModelCheckpoint: filepath '.*ckpt-\{val_loss:.2f\}.npz' cannot be filled in"),
    Case("the loss becomes NaN", "mlp.compile(optimizer=optimizers.SGD(lr=1e30)); mlp.fit(x, y, epochs=5, verbose=0)",
         FloatingPointError, r"fit: the loss became (nan|inf) at epoch \d, batch 1/1: training diverged; the weights are "
         r"those before this batch"),
    Case("set_weights with a wrong shape", "mlp.set_weights([np.zeros((1, 16))] + mlp.get_weights()[1:])",
         ValueError, r"set_weights: dense/kernel has shape \(784, 16\), got \(1, 16\)"),
    Case("a thread count of 0", "fastnet.set_num_threads(0)", ValueError, r"n_threads must be >= 1, got 0"),
    Case("a negative seed", "fastnet.set_seed(-1)", ValueError, r"set_seed: seed must be in \[0, 9223372036854775807\]"),
    Case("labels that are not numbers", "fastnet.utils.to_categorical(['3', '1'], 10)", TypeError,
         r"to_categorical expects integer class labels, got dtype <U1"),
    Case("a picture of no digits", "fastnet.viz.digit_grid(images[:0])", ValueError,
         r"images is empty \(shape \(0, 28, 28, 1\)\): nothing to draw"),
    Case("a grid with zero columns", "fastnet.viz.tile(images[..., 0], 0)", ValueError,
         r"tile: cols must be >= 1, got 0"),
    # ---- sample and class weights ----
    Case("sample and class weights together", "mlp.fit(x, y, sample_weight=np.ones(4), class_weight={0: 2.0})",
         ValueError, r"fit: pass sample_weight or class_weight, not both \(Keras\)"),
    Case("a sample weight per class instead of per sample", "mlp.fit(x, y, sample_weight=np.ones(10))",
         ValueError, r"fit: sample_weight must have shape \(4,\), one weight per sample, got \(10,\)"),
    Case("a negative sample weight", "mlp.evaluate(x, y, sample_weight=[1, -1, 1, 1])", ValueError,
         r"evaluate: sample_weight must be finite and >= 0"),
    Case("class weights as a list", "mlp.fit(x, y, class_weight=[1.0] * 10)", TypeError,
         r"fit: class_weight must be a dict \{class index: weight\}, got list"),
    Case("a class weight for a class the model does not have", "mlp.fit(x, y, class_weight={10: 2.0})", ValueError,
         r"fit: class_weight key must be in \[0, 9\], got 10"),
    # ---- Input / InputLayer, pop ----
    Case("an Input after a layer", "Sequential([Dense(4, input_shape=(3,)), fastnet.layers.Input(shape=(3,))])",
         ValueError, r"Input / InputLayer must be the model's first element, and come once; this model already has "
                     r"layers"),
    Case("an Input shape the first layer contradicts",
         "Sequential([fastnet.layers.Input(shape=(3,)), Dense(4, input_shape=(5,))])", ValueError,
         r"dense: input_shape=\(5,\) but the model's Input has shape=\(3,\); give the shape once"),
    Case("an Input without a shape", "fastnet.layers.Input()", TypeError,
         r"InputLayer needs exactly one of shape, batch_shape \(or Keras 2's input_shape\), got none"),
    Case("an Input with an empty axis", "fastnet.layers.Input(shape=(28, 0))", ValueError,
         r"InputLayer: shape\[1\] must be >= 1, got 0"),
    Case("pop from an empty model", "Sequential().pop()", TypeError,
         r"Sequential.pop: there are no layers in the model"),
    Case("return_dict that is not a bool", "mlp.evaluate(x, y, return_dict='yes')", TypeError,
         r"evaluate: return_dict must be True or False"),
    # ---- model files ----
    Case("a model path that is not a path", "mlp.save(42)", TypeError,
         r"save: filepath must be a file path \(str or os.PathLike\), got int 42"),
    Case("a truncated model file", "load_model_bytes = open(tmp + '/m.npz', 'rb').read()[:300]; "
         "open(tmp + '/t.npz', 'wb').write(load_model_bytes); fastnet.load_model(tmp + '/t.npz')",
         fastnet.saving.ModelFileError, r"t.npz: truncated, corrupted or not a fastnet model file",
         setup="mlp.save(tmp + '/m.npz')"),
    Case("a foreign .npz as a model", "np.savez(tmp + '/f.npz', a=np.zeros(3)); fastnet.load_model(tmp + '/f.npz')",
         fastnet.saving.ModelFileError, r"f.npz: not a fastnet model \(no fastnet_model.json entry\)"),
    Case("a model file of another format", "mlp.save(tmp + '/m.h5')", ValueError,
         r"save: '.*m.h5': fastnet saves models as .keras \(Keras 3's format\) or .npz \(fastnet's own, with the "
         r"optimizer state for exact resume\); weights alone: save_weights\('x.weights.h5'\) \(legacy Keras .h5 "
         r"model files are not supported\)"),
    Case("a weights file without .weights.h5", "mlp.save_weights(tmp + '/w.h5')", ValueError,
         r"save_weights/load_weights: '.*w.h5': weights files end in .weights.h5"),
    Case("a Keras layer fastnet lacks", "fastnet.load_model(tmp + '/bn.keras')", fastnet.keras_format.KerasFileError,
         r"bn.keras: layer 'dense' is a Keras BatchNormalization; fastnet reads Dense, Conv2D, MaxPooling2D, "
         r"Dropout, Flatten, Activation(, \w+)* \(and InputLayer\)",  # and the layers added since
         setup="keras_file(mlp, tmp + '/bn.keras', _edit_layer(1, class_name='BatchNormalization'))"),
    Case("a Keras setting fastnet lacks", "fastnet.load_model(tmp + '/dilated.keras')",
         fastnet.keras_format.KerasFileError,
         r"dilated.keras: layer 'conv2d' \(Conv2D\): dilation_rate=\[2, 2\] is a Keras setting fastnet does not have",
         setup="keras_file(cnn, tmp + '/dilated.keras', _edit_layer(1, dilation_rate=[2, 2]))"),
    Case("a truncated .keras file", "open(tmp + '/t.keras', 'wb').write(open(tmp + '/m.keras', 'rb').read()[:500]); "
         "fastnet.load_model(tmp + '/t.keras')", fastnet.keras_format.KerasFileError,
         r"t.keras: truncated, corrupted or not a .keras archive", setup="mlp.save(tmp + '/m.keras')"),
    Case("an optimizer setting Keras 3 lacks", "mlp.compile(optimizer=optimizers.RMSprop(decay=1e-4)); "
         "mlp.save(tmp + '/m.keras')", fastnet.keras_format.KerasFileError,
         r"Keras 3 optimizers have no time decay \(decay=0.0001\); save with include_optimizer=False, or as .npz"),
    Case("weights of another architecture",
         "Sequential([Dense(32, input_shape=(784,)), Dense(10)]).load_weights(tmp + '/w.weights.h5')",
         fastnet.keras_format.KerasFileError,
         r"w.weights.h5: layers/dense/vars/0 has shape \(784, 16\), dense/kernel has \(784, 32\)",
         setup="mlp.save_weights(tmp + '/w.weights.h5')"),
    # ---- model files from strangers (fastnet._untrusted; tests/test_untrusted_files.py has many more) ----
    Case("a .keras whose kernel is stored in another file", "fastnet.load_model(tmp + '/x.keras')",
         fastnet.keras_format.KerasFileError,
         r"x.keras: model.weights.h5: layers/dense/vars/0 is a dataset stored in other files \(external storage\); "
         r"a model file may hold only groups and datasets stored in itself",
         setup="mlp.save(tmp + '/m.keras'); edit_file(tmp + '/m.keras', tmp + '/x.keras', "
               "keras=mf.external_storage('layers/dense/vars/0', tmp + '/secret'))"),
    Case("a weights file with an external link", "mlp.load_weights(tmp + '/l.weights.h5')",
         fastnet.keras_format.KerasFileError, r"l.weights.h5: layers/dense/vars/0 is an external link",
         setup="mlp.save_weights(tmp + '/w.weights.h5'); edit_file(tmp + '/w.weights.h5', tmp + '/l.weights.h5', "
               "h5=mf.link('layers/dense/vars/0', 'external', 'other.h5:/data'))"),
    Case("a kernel that claims 64 TiB", "fastnet.load_model(tmp + '/bomb.keras')", fastnet.keras_format.KerasFileError,
         r"bomb.keras: model.weights.h5: layers/dense/vars/0 declares float32 \(4194304, 4194304\) "
         r"\(70,368,744,177,664 bytes\) that are not stored in the file",
         setup="mlp.save(tmp + '/m.keras'); edit_file(tmp + '/m.keras', tmp + '/bomb.keras', "
               "keras=mf.replace_dataset('layers/dense/vars/0', shape=(4194304, 4194304)))"),
    Case("an architecture larger than its file", "fastnet.load_model(tmp + '/big.npz')",
         fastnet.saving.ModelFileError,
         r"big.npz: the model described in it has [\d,]+ weights but the file is [\d,]+ bytes, too small "
         r"to hold them",
         setup="mlp.save(tmp + '/m.npz'); meta = mf.npz_meta(open(tmp + '/m.npz', 'rb').read()); "
               "meta['model']['layers'][0]['config'].update(units=2**31 - 1, batch_input_shape=[None, 1000]); "
               "open(tmp + '/big.npz', 'wb').write(mf.npz_with_meta(open(tmp + '/m.npz', 'rb').read(), meta))"),
    Case("an .npy header that claims 2**40 floats", "fastnet.load_model(tmp + '/h.npz')", fastnet.saving.ModelFileError,
         r"h.npz: member 'weight_000.npy': its header declares <f4 \(1099511627776,\) \(4,398,046,511,104 bytes\) "
         r"but it holds 16 bytes of data",
         setup="mlp.save(tmp + '/m.npz'); open(tmp + '/h.npz', 'wb').write(mf.replace_member(open(tmp + '/m.npz', "
               "'rb').read(), 'weight_000.npy', mf.npy_with_header(\"{'descr': '<f4', 'fortran_order': False, "
               "'shape': (1099511627776,)}\", bytes(16))))"),
    Case("a config nested 100,000 levels deep", "fastnet.load_model(tmp + '/deep.keras')",
         fastnet.keras_format.KerasFileError, r"deep.keras: config.json is nested 100000 levels deep; fastnet reads at "
                                              r"most 64",
         setup="mlp.save(tmp + '/m.keras'); open(tmp + '/deep.keras', 'wb').write(mf.keras_with_config(open(tmp + "
               "'/m.keras', 'rb').read(), '[' * 100000 + ']' * 100000))"),
    Case("a layer entry that is not an object", "fastnet.load_model(tmp + '/s.keras')",
         fastnet.keras_format.KerasFileError, r"s.keras: layer 1 must be an object, got the string \"Dense\"",
         setup="keras_file(mlp, tmp + '/s.keras', lambda c: c['config']['layers'].__setitem__(1, 'Dense'))"),
    Case("weights named as variables, not numbered", "fastnet.load_model(tmp + '/n.keras')",
         fastnet.keras_format.KerasFileError,
         r"n.keras: model.weights.h5: layers/dense/vars holds \['1', 'kernel'\]; Keras numbers a layer's weights 0, "
         r"1, ... \(dense/kernel is 0\)",
         setup="mlp.save(tmp + '/m.keras'); edit_file(tmp + '/m.keras', tmp + '/n.keras', "
               "keras=lambda f: f.move('layers/dense/vars/0', 'layers/dense/vars/kernel'))"),
    Case("an unknown member in an .npz model", "fastnet.load_model(tmp + '/u.npz')", fastnet.saving.ModelFileError,
         r"u.npz: unknown member 'weight_abc.npy'; a fastnet model holds fastnet_model.json.npy, weight_NNN.npy and "
         r"optimizer_NNN.npy",
         setup="mlp.save(tmp + '/m.npz'); blob = open(tmp + '/m.npz', 'rb').read(); open(tmp + '/u.npz', 'wb')"
               ".write(mf.zip_bytes(mf.members(blob) + [('weight_abc.npy', mf.npy(np.ones(3)))]))"),
    Case("an .npz model without its state", "fastnet.load_model(tmp + '/st.npz')", fastnet.saving.ModelFileError,
         r"st.npz: fastnet_model.json has no 'state'",
         setup="mlp.save(tmp + '/m.npz'); blob = open(tmp + '/m.npz', 'rb').read(); meta = mf.npz_meta(blob); "
               "del meta['state']; open(tmp + '/st.npz', 'wb').write(mf.npz_with_meta(blob, meta))"),
    Case("a NaN optimizer iteration count", "fastnet.load_model(tmp + '/nan.keras')",
         fastnet.keras_format.KerasFileError,
         r"nan.keras: model.weights.h5: optimizer/vars/0, the optimizer's iteration count, is nan",
         setup="mlp.save(tmp + '/m.keras'); edit_file(tmp + '/m.keras', tmp + '/nan.keras', keras=mf.replace_dataset("
               "'optimizer/vars/0', shape=(), dtype='f8', data=float('nan')))"),
    Case("a .keras whose weights are not HDF5", "fastnet.load_model(tmp + '/c.keras')",
         fastnet.keras_format.KerasFileError,
         r"c.keras: model.weights.h5 is not a readable HDF5 file \(OSError: .*file signature not found",
         setup="mlp.save(tmp + '/m.keras'); open(tmp + '/c.keras', 'wb').write(mf.replace_member(open(tmp + "
               "'/m.keras', 'rb').read(), 'model.weights.h5', b'garbage' * 9999))"),
    Case("Keras 3's Flatten order fastnet does not do", "Sequential([Conv2D(2, (3, 3), input_shape=(8, 8, 1)), "
         "Flatten(data_format='channels_first')])", ValueError,
         r"flatten \(Flatten\): data_format='channels_first' after channels_last layers would flatten \(W, C, H\)"),
    # ---- MNIST files (the download mirrors are switched off here: no network in tests) ----
    Case("MNIST nowhere", "mnist.load_data(path=tmp)", fastnet.datasets.DatasetError,
         r"(?s)could not load MNIST from any source:.*not found.*no mirrors configured.*Fix: download the four files"),
    Case("an MNIST file that is not the release", "write_mnist(tmp + '/m'); mnist.load_data(path=tmp + '/m')",
         fastnet.datasets.DatasetError, r"train-images-idx3-ubyte: checksum mismatch \(SHA256 .*\): the file is "
         r"corrupted or not the MNIST release"),
    Case("a truncated MNIST file", "write_mnist(tmp + '/m', images=_idx(np.zeros((3, 28, 28)))[:-100]); "
         "mnist.load_data(path=tmp + '/m')", fastnet.datasets.DatasetError,
         r"train-images-idx3-ubyte: 2268 bytes, expected exactly 2368 for dimensions \(3, 28, 28\) \(truncated\)"),
    Case("an MNIST file with the wrong magic number",
         "write_mnist(tmp + '/m', images=_idx(np.zeros(3))); mnist.load_data(path=tmp + '/m')",
         fastnet.datasets.DatasetError, r"bad magic number 00000801, expected 00000803"),
    Case("a truncated gzip file", "write_mnist(tmp + '/m', gz_images=gzip.compress(_idx(np.ones((3, 28, 28))))[:-20]); "
         "mnist.load_data(path=tmp + '/m')", fastnet.datasets.DatasetError, r"corrupted or truncated gzip data"),
    # ---- the kernel API (fastnet._kernels) ----
    Case("kernel: a float64 array", "_kernels.gemm(np.ones((2, 3)), np.ones((3, 4), np.float32))", TypeError,
         r"a must have dtype float32, got float64 \(convert with a.astype\(np.float32\)\)"),
    Case("kernel: a non-contiguous array", "_kernels.activation_forward(np.ones((4, 4), np.float32)[:, ::2], 'relu')",
         ValueError, r"x with shape \(4, 2\) must be C-contiguous \(use np.ascontiguousarray\)"),
    Case("kernel: an empty dimension", "_kernels.softmax_forward(np.ones((3, 0), np.float32))", ValueError,
         r"x has shape \(3, 0\): every dimension must be >= 1"),
    Case("kernel: an output that partly overlaps its input",
         "b = np.ones(9, np.float32); _kernels.activation_forward(b[:8], 'relu', out=b[1:])", ValueError,
         r"out partly overlaps an input: pass the input itself \(in place\) or a separate array"),
    Case("kernel: an activation a dense kernel cannot fuse",
         "_kernels.dense_forward(np.ones((2, 3), np.float32), np.ones((3, 4), np.float32), activation='tanh')",
         ValueError, r"dense_forward applies activation 'linear' or 'relu' itself, got 'tanh'"),
    Case("kernel: an optimizer slot that is the parameter",
         "p = np.ones(4, np.float32); _kernels.rmsprop_update(p, p, np.ones(4, np.float32), 0.1, 0.9, 1e-7)",
         ValueError, r"param and slot 0 must not overlap"),
    Case("kernel: a convolution's backward given the pool's argmax without its output",
         "x, w = np.ones((2, 10, 10, 4), np.float32), np.ones((3, 3, 4, 6), np.float32)\n"
         "y, argmax = _kernels.conv2d_forward_maxpool(x, w)\n"
         "_kernels.conv2d_backward(np.ones_like(y), x, w, argmax=argmax)",
         ValueError, r"conv2d_backward: a pooled dy needs both argmax and pooled"),
    Case("kernel: a pooled gradient whose shape is the convolution's",
         "x, w = np.ones((2, 10, 10, 4), np.float32), np.ones((3, 3, 4, 6), np.float32)\n"
         "y, argmax = _kernels.conv2d_forward_maxpool(x, w)\n"
         "_kernels.conv2d_backward(np.ones((2, 8, 8, 6), np.float32), x, w, argmax=argmax, pooled=y)",
         ValueError, r"dy has shape \(2, 8, 8, 6\), expected \(2, 4, 4, 6\)"),
]


@contextlib.contextmanager
def isolated():
    """A fresh folder, no datasets root, no cache, no download mirrors, and the defaults restored afterwards."""
    saved_env = {k: os.environ.get(k) for k in ("FASTNET_DATA", "XDG_CACHE_HOME")}
    saved = (backend._data_format, backend._data_format_chosen, mnist.MIRRORS, fastnet.get_seed())
    tmp = tempfile.mkdtemp(prefix="fastnet-errors-")
    os.environ.pop("FASTNET_DATA", None)
    os.environ["XDG_CACHE_HOME"] = os.path.join(tmp, "cache")
    mnist.MIRRORS = ()
    try:
        yield tmp
    finally:
        backend._data_format, backend._data_format_chosen, mnist.MIRRORS = saved[:3]
        fastnet.set_seed(saved[3])
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)


def run(case):
    """The exception case.code raises, with its message as printed (the temporary folder shown as <tmp>); None
    when it raises nothing."""
    with isolated() as tmp:
        namespace = NAMESPACE(tmp)
        if case.setup:
            exec(case.setup, namespace)
        try:
            exec(case.code, namespace)
        except Exception as e:  # noqa: BLE001 - which exception it is, is the point
            return e, str(e).replace(tmp, "<tmp>")
    return None, None
