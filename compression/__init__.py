"""Model-compression studio: the headless library.

tfmot works only with Keras 2 (``tf_keras``). TensorFlow reads
``TF_USE_LEGACY_KERAS`` once, when it is first imported, so every entry point
(app, worker, command line, tests) imports this package before TensorFlow.
This module never imports TensorFlow itself: the dashboard imports
``compression.jobs`` and ``compression.studio.charts`` without paying for it.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
