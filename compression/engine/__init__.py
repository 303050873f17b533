"""engine: executes recipes; the only layer that imports TensorFlow (and tfmot).

Importing this package stays light (the method and exporter registries under it are read without
TensorFlow); it only installs the import hook below.
"""

import importlib.abc
import importlib.machinery
import sys


class _TfmotWithoutKeras3(importlib.abc.MetaPathFinder):
    """Import tfmot without its probe of Keras 3.

    tfmot's prune_registry runs ``from keras.src.engine import base_layer`` when tfmot is imported.
    With Keras 3 installed beside tf_keras (the studio reads Keras 3 model files), that imports all of
    Keras 3, about 3 CPU seconds in every process that trains, only to fail on ``keras.src.engine``
    and fall back to ``base_layer = None``. While tfmot's top-level package runs, ``keras`` is blocked
    (``import keras`` raises ImportError at once), which gives the same result without the cost; the
    block is lifted when that import ends, so Keras 3 imports normally wherever it is needed.
    """

    NAME = "tensorflow_model_optimization"

    def find_spec(self, name, path=None, target=None):
        if name != self.NAME or "keras" in sys.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _Blocking(spec.loader)
        return spec


class _Blocking(importlib.abc.Loader):
    def __init__(self, real):
        self.real = real

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module):
        blocked = "keras" not in sys.modules
        if blocked:
            sys.modules["keras"] = None  # type: ignore[assignment]
        try:
            self.real.exec_module(module)
        finally:
            if blocked and "keras" in sys.modules and sys.modules["keras"] is None:
                del sys.modules["keras"]


if not any(isinstance(f, _TfmotWithoutKeras3) for f in sys.meta_path):
    sys.meta_path.insert(0, _TfmotWithoutKeras3())
