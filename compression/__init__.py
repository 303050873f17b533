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

# The layers, bottom to top. A module may import its own layer and the layers below it, never one
# above (tests/test_architecture.py walks the import graph, function-level imports included).
# Only compression.engine imports TensorFlow; the dashboard (app.py, views/) sits on top.
LAYERS = (
    ("compression", "compression.errors"),  # the package itself and the user-facing errors
    ("compression.tflite",),  # TFLite files without TensorFlow: the one reader and kernel matcher
    ("compression.dc",),  # the Deep Compression container codec
    ("compression.inputs",),  # what users bring: limits, model files, npz files, datasets
    ("compression.recipe",),  # the schema: choices, parameters, registries, declarations, recipe, plan, figures
    ("compression.store",),  # the workspace and the one reader of run folders' results
    ("compression.studies",),  # experiments over many runs: kinds' specs, plans and aggregates (no TF, no queue)
    ("compression.engine",),  # executes recipes: the only TensorFlow importer
    ("compression.jobs",),  # background jobs: records, queue, workers
    ("compression.studio",),  # what pages need: charts, health, reports, bundle, presets
    ("compression.cli", "compression.__main__"),  # the command line
)
