"""keras' own dataset download, the last resort of compression.inputs.data's loaders (needs tf_keras);
importing this module registers it there."""

from __future__ import annotations

import socket

import compression  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)


def keras_load_data(loader_name: str):
    """``tf_keras.datasets.<loader_name>.load_data()`` with a 20 s network timeout."""
    import tf_keras

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        return getattr(tf_keras.datasets, loader_name).load_data()
    finally:
        socket.setdefaulttimeout(old)


def _register() -> None:
    from compression.inputs import data

    data.set_downloader(keras_load_data)


_register()
