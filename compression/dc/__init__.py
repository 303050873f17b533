"""Deep Compression's third stage for TFLite files, without TensorFlow.

``encode(tflite) -> (model.dc bytes, accounting)`` and ``decode(blob) -> tflite`` (byte-identical).
See container.py for the format and tflite.py for the FlatBuffers reader.
"""

from compression.dc.container import decode, encode, kernel_tensors, layer_of, with_layers
from compression.dc.tflite import read as read_tflite
from compression.errors import ContainerError, TFLiteFileError

__all__ = ["encode", "decode", "kernel_tensors", "layer_of", "with_layers", "read_tflite", "ContainerError",
           "TFLiteFileError"]
