"""TFLite files without TensorFlow: the one reader (``reader``) and the one kernel matcher (``kernels``)."""

from compression.tflite.kernels import LayerWeights, layer_of, read_weights
from compression.tflite.reader import read

__all__ = ["LayerWeights", "layer_of", "read", "read_weights"]
