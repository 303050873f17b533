"""Deep Compression's third stage for TFLite files, without TensorFlow.

``encode(tflite, layer_names) -> (model.dc bytes, accounting)`` and ``decode(blob) -> tflite``
(byte-identical). See container.py for the format; files are read with compression.tflite.
"""

from compression.dc.container import decode, encode, kernel_tensors
from compression.errors import ContainerError, TFLiteFileError

__all__ = ["encode", "decode", "kernel_tensors", "ContainerError", "TFLiteFileError"]
