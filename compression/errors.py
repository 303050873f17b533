"""Errors with messages meant for users: one line, naming what is wrong and what is allowed."""


class UserError(Exception):
    """Something the user gave us is wrong. ``str(err)`` is the whole message."""


class RecipeError(UserError):
    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class DatasetError(UserError):
    pass


class ModelLoadError(UserError):
    pass


class Cancelled(Exception):
    """Raised from a progress callback to stop a run."""


class TFLiteFileError(UserError):
    """A .tflite file that cannot be read (damaged, truncated or not a TFLite flatbuffer)."""


class ContainerError(UserError):
    """A Deep Compression container (model.dc) that is damaged, truncated or not one at all."""
