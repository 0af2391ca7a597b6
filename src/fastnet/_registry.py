"""Model classes by name, for the code that makes models from files (fastnet.saving, fastnet.keras_format,
fastnet._untrusted) without importing the module that defines them: fastnet.models imports the file formats (its
save, load_weights and export), so they must not import it back. Keras keeps its registered objects the same way."""
_MODELS = {}


def register_model(cls):
    """A class decorator: the class a file naming it (its __name__) is made as."""
    _MODELS[cls.__name__] = cls
    return cls


def model_class(name):
    return _MODELS[name]
