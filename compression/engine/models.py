"""Baseline architectures, training, and safe loading and saving of Keras models.

Models are tf_keras (Keras 2) models, the only kind tfmot can wrap. Loading a user's
file never runs code from it: the config is read and checked before anything is
deserialised, Lambda layers and unknown classes are refused, and files written by
Keras 3 are rebuilt as tf_keras functional models with their weights copied and their
outputs checked against Keras 3 (compression/engine/keras3.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

import compression  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tf_keras

from compression.recipe.choices import Arch
from compression.recipe.training import steps_per_epoch
from compression.inputs import data
from compression.inputs.data import Dataset
from compression.errors import Cancelled, ModelLoadError
from compression.inputs import modelfile

keras = tf_keras
layers = tf_keras.layers

# --- architectures -----------------------------------------------------------------------


# Convolutional architectures: they take images with a channel axis (Dataset.with_channel_axis).
NEEDS_CHANNEL_AXIS = frozenset({Arch.LENET_5, Arch.LENET_5_CAFFE, Arch.RESNET_20, Arch.MOBILENET_V2})
# A stride-2 step is taken only while the feature map keeps at least this many pixels a side,
# so 8x8 digits are downsampled twice (8 -> 4 -> 2) and 28x28 MNIST three or four times.
MIN_MAP = 2


def needs_channel_axis(arch: Arch | str) -> bool:
    return Arch(arch) in NEEDS_CHANNEL_AXIS


def build(arch: Arch | str, input_shape: tuple[int, ...], num_classes: int, seed: int = 0) -> keras.Model:
    """A fresh, untrained baseline. Dense models flatten any input; lenet_5 needs images."""
    arch = Arch(arch)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    if arch == Arch.LENET_5_CAFFE:
        # Caffe's LeNet (Han et al.'s "LeNet-5": 431K parameters on 28x28x1): valid 5x5 convolutions.
        if len(input_shape) == 2:
            x = layers.Reshape((*input_shape, 1), name="add_channel")(inputs)
        elif len(input_shape) == 3:
            x = inputs
        else:
            raise ModelLoadError(
                f"lenet_5_caffe needs image inputs (H, W) or (H, W, C); this dataset has {list(input_shape)}")
        if min(input_shape[:2]) < 16:
            raise ModelLoadError(
                f"lenet_5_caffe needs images of at least 16x16 pixels; this dataset has {list(input_shape[:2])}")
        x = layers.Conv2D(20, 5, padding="valid", name="conv1")(x)
        x = layers.MaxPooling2D(2, name="pool1")(x)
        x = layers.Conv2D(50, 5, padding="valid", name="conv2")(x)
        x = layers.MaxPooling2D(2, name="pool2")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(500, activation="relu", name="fc1")(x)
    elif arch == Arch.LENET_5:
        if len(input_shape) == 2:
            x = layers.Reshape((*input_shape, 1), name="add_channel")(inputs)
            h = input_shape[0]
        elif len(input_shape) == 3:
            x, h = inputs, input_shape[0]
        else:
            raise ModelLoadError(f"lenet_5 needs image inputs (H, W) or (H, W, C); this dataset has {list(input_shape)}")
        x = layers.Conv2D(6, 5, padding="same", activation="relu", name="conv1")(x)
        x = layers.MaxPooling2D(2, name="pool1")(x)
        # Classic LeNet-5 shrinks with a 'valid' 5x5 conv; small images (8x8 digits) keep their size.
        x = layers.Conv2D(16, 5, padding="valid" if h // 2 >= 10 else "same", activation="relu", name="conv2")(x)
        x = layers.MaxPooling2D(2, name="pool2")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(120, activation="relu", name="fc1")(x)
        x = layers.Dense(84, activation="relu", name="fc2")(x)
    elif arch in (Arch.RESNET_20, Arch.MOBILENET_V2):
        if len(input_shape) == 2:
            x = layers.Reshape((*input_shape, 1), name="add_channel")(inputs)
        elif len(input_shape) == 3:
            x = inputs
        else:
            raise ModelLoadError(f"{arch.value} needs image inputs (H, W) or (H, W, C); this dataset has "
                                 f"{list(input_shape)}")
        size = min(input_shape[:2])
        x = _resnet_20(x, size) if arch == Arch.RESNET_20 else _mobilenet_v2(x, size)
    else:
        x = layers.Flatten(name="flatten")(inputs)
        widths = [300, 100] if arch == Arch.LENET_300_100 else [512, 512, 256, 256, 128, 128, 64, 64, 32, 32]
        for i, w in enumerate(widths, 1):
            x = layers.Dense(w, activation="relu", name=f"fc{i}")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="output")(x)
    return keras.Model(inputs, outputs, name=arch.value)


def _stride(size: int, wanted: int) -> int:
    """``wanted`` (2) unless it would shrink the map below MIN_MAP pixels a side."""
    return wanted if wanted > 1 and -(-size // wanted) >= MIN_MAP and size > MIN_MAP else 1


def _resnet_20(x, size: int):
    """ResNet-20 for small images (He et al. 2016, section 4.2): a 3x3 conv, then 3 stages of 3 basic
    blocks (conv-BN-ReLU-conv-BN plus the shortcut, then ReLU) with 16, 32 and 64 filters; a stage
    that halves the map uses a 1x1 conv + BN shortcut. About 272K parameters with 10 classes."""
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate((16, 32, 64), 1):
        for block in range(1, 4):
            p = f"s{stage}b{block}"
            stride = _stride(size, 2) if stage > 1 and block == 1 else 1
            size = -(-size // stride)
            shortcut = x
            y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{p}_conv1")(x)
            y = layers.BatchNormalization(name=f"{p}_bn1")(y)
            y = layers.ReLU(name=f"{p}_relu1")(y)
            y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{p}_conv2")(y)
            y = layers.BatchNormalization(name=f"{p}_bn2")(y)
            if stride != 1 or shortcut.shape[-1] != filters:
                shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{p}_proj")(shortcut)
                shortcut = layers.BatchNormalization(name=f"{p}_proj_bn")(shortcut)
            x = layers.Add(name=f"{p}_add")([shortcut, y])
            x = layers.ReLU(name=f"{p}_relu2")(x)
    return layers.GlobalAveragePooling2D(name="pool")(x)


# (expansion, output channels, repeats, stride) of a narrow MobileNetV2 (Sandler et al. 2018, Table 2,
# with fewer and narrower stages so it trains in the studio).
MOBILENET_V2_BLOCKS = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2), (4, 64, 2, 2))


def _mobilenet_v2(x, size: int):
    """Stem conv, inverted residual blocks (1x1 expand, BN, ReLU6, 3x3 depthwise, BN, ReLU6, 1x1
    linear projection, BN, Add when shapes allow), a 1x1 conv to 128 channels and global pooling."""
    stride = _stride(size, 2) if size >= 24 else 1
    size = -(-size // stride)
    x = layers.Conv2D(16, 3, strides=stride, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    i = 0
    for t, c, n, s in MOBILENET_V2_BLOCKS:
        for r in range(n):
            i += 1
            p = f"block{i}"
            stride = _stride(size, s) if r == 0 else 1
            size = -(-size // stride)
            inp, channels = x, int(x.shape[-1])
            if t != 1:
                x = layers.Conv2D(channels * t, 1, use_bias=False, name=f"{p}_expand")(x)
                x = layers.BatchNormalization(name=f"{p}_expand_bn")(x)
                x = layers.ReLU(6.0, name=f"{p}_expand_relu")(x)
            x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{p}_dw")(x)
            x = layers.BatchNormalization(name=f"{p}_dw_bn")(x)
            x = layers.ReLU(6.0, name=f"{p}_dw_relu")(x)
            x = layers.Conv2D(c, 1, use_bias=False, name=f"{p}_project")(x)
            x = layers.BatchNormalization(name=f"{p}_project_bn")(x)
            if stride == 1 and channels == c:
                x = layers.Add(name=f"{p}_add")([inp, x])
    x = layers.Conv2D(128, 1, use_bias=False, name="head_conv")(x)
    x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.ReLU(6.0, name="head_relu")(x)
    return layers.GlobalAveragePooling2D(name="pool")(x)


# --- training ------------------------------------------------------------------------------

# report(epoch, epochs, batch, batches, loss, accuracy); may raise Cancelled
BatchReport = Callable[[int, int, int, int, float | None, float | None], None]


class ReportProgress(keras.callbacks.Callback):
    """Calls ``report`` after every batch and epoch, so a cancel flag is seen within one batch."""

    def __init__(self, report: BatchReport, epochs: int, batches: int):
        super().__init__()
        self.report, self.epochs, self.batches = report, epochs, batches
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.report(epoch + 1, self.epochs, 0, self.batches, None, None)

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self.report(self.epoch + 1, self.epochs, batch + 1, self.batches, logs.get("loss"), logs.get("accuracy"))


def outputs_probabilities(model: keras.Model) -> bool:
    """True when the model ends in softmax (probabilities), False for logits."""
    last = model.layers[-1]
    while hasattr(last, "layer"):  # tfmot wrappers
        last = last.layer
    act = getattr(last, "activation", None)
    name = getattr(act, "__name__", str(act))
    return "softmax" in name or last.__class__.__name__ == "Softmax"


LR_SCHEDULES = ("constant", "cosine", "exponential")


def make_optimizer(learning_rate: float, *, lr_schedule: str = "constant", weight_decay: float = 0.0,
                   decay_rate: float = 0.9, epochs: int = 1, steps_per_epoch: int = 1):
    """Adam (AdamW when ``weight_decay`` > 0) with a learning-rate schedule.

    constant: ``learning_rate`` throughout. cosine: from ``learning_rate`` down to 0 over all
    ``epochs * steps_per_epoch`` steps. exponential: multiplied by ``decay_rate`` after every
    epoch. Weight decay is decoupled (tf_keras AdamW: each step shrinks weights by
    ``learning_rate(t) * weight_decay``, apart from the Adam update).
    """
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, not {lr_schedule!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, not {weight_decay}")
    if not 0 < decay_rate <= 1:
        raise ValueError(f"decay_rate must be in (0, 1], not {decay_rate}")
    steps_per_epoch = max(1, int(steps_per_epoch))
    lr = learning_rate
    if lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, epochs * steps_per_epoch),
                                                   alpha=0.0)
    elif lr_schedule == "exponential":
        lr = keras.optimizers.schedules.ExponentialDecay(learning_rate, decay_steps=steps_per_epoch,
                                                         decay_rate=decay_rate, staircase=True)
    if weight_decay > 0:
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay)
    return keras.optimizers.Adam(lr)


def compile_for_training(model: keras.Model, learning_rate: float, from_logits: bool | None = None,
                         optimizer=None) -> None:
    if from_logits is None:
        from_logits = not outputs_probabilities(model)
    model.compile(
        optimizer=optimizer if optimizer is not None else keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=["accuracy"],
    )


def fit(model: keras.Model, ds: Dataset, *, epochs: int, batch_size: int, learning_rate: float,
        report: BatchReport | None = None, callbacks=(), from_logits: bool | None = None,
        lr_schedule: str = "constant", weight_decay: float = 0.0, decay_rate: float = 0.9,
        label_smoothing: float = 0.0, augment_shift: int = 0, teacher=None, distill_alpha: float = 0.0,
        distill_temperature: float = 4.0, seed: int = 0) -> None:
    """Train in place on the training split, validating on the fixed validation split.

    ``lr_schedule``, ``weight_decay`` and ``decay_rate``: see ``make_optimizer``; the defaults
    are plain Adam at a fixed rate. ``label_smoothing``, ``augment_shift`` (random shifts of up to
    that many pixels) and distillation from ``teacher`` (weight ``distill_alpha``, temperature
    ``distill_temperature``): see compression.engine.training.
    """
    if epochs <= 0:
        return
    from compression.engine import training

    batches = steps_per_epoch(len(ds.x_train), batch_size)
    optimizer = make_optimizer(learning_rate, lr_schedule=lr_schedule, weight_decay=weight_decay,
                               decay_rate=decay_rate, epochs=epochs, steps_per_epoch=batches)
    if from_logits is None:
        from_logits = not outputs_probabilities(model)
    distilling = teacher is not None and distill_alpha > 0
    extended = training.wanted(label_smoothing, augment_shift, teacher, distill_alpha)
    if extended:
        model.compile(optimizer=optimizer, metrics=[training.accuracy_fn(distilling)],
                      loss=training.loss_fn(ds.num_classes, from_logits, label_smoothing, distill_alpha,
                                            distill_temperature, distilling))
    else:
        compile_for_training(model, learning_rate, from_logits, optimizer=optimizer)
    cbs = list(callbacks)
    if report is not None:
        cbs.append(ReportProgress(report, epochs, batches))
    from compression.engine.metrics import training_activity

    try:
        with training_activity():  # a latency timing anywhere on this machine waits until this ends
            if extended:
                teach = training.teacher_probabilities(teacher, outputs_probabilities(teacher)) if distilling else None
                train = training.dataset(ds.x_train, ds.y_train, batch_size, shuffle=True, augment_shift=augment_shift,
                                         teacher_call=teach, seed=seed)
                val = training.dataset(ds.x_val, ds.y_val, batch_size, shuffle=False, teacher_call=teach)
                model.fit(train, validation_data=val, epochs=epochs, callbacks=cbs, verbose=0)
            else:
                model.fit(ds.x_train, ds.y_train, validation_data=(ds.x_val, ds.y_val), epochs=epochs,
                          batch_size=batch_size, callbacks=cbs, verbose=0, shuffle=True)
    except Cancelled:
        raise
    except Exception as e:  # Keras wraps callback exceptions in some versions
        if isinstance(e.__cause__, Cancelled) or isinstance(e.__context__, Cancelled):
            raise Cancelled() from None
        raise


def train_baseline(arch: Arch | str, ds: Dataset, *, epochs: int, batch_size: int, seed: int,
                   learning_rate: float = 1e-3, report: BatchReport | None = None, lr_schedule: str = "constant",
                   weight_decay: float = 0.0, decay_rate: float = 0.9) -> keras.Model:
    if needs_channel_axis(arch):
        ds = ds.with_channel_axis()
    model = build(arch, ds.input_shape, ds.num_classes, seed)
    fit(model, ds, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, report=report,
        lr_schedule=lr_schedule, weight_decay=weight_decay, decay_rate=decay_rate)
    return model


def with_input_scaling(model: keras.Model, factor: float) -> keras.Model:
    """``model`` behind a Rescaling layer: the returned model takes inputs ``1/factor`` times larger
    (raw pixel values) and multiplies them by ``factor`` itself. Works for QAT models too: the
    rescaling runs in float before the model's own input quantizer."""
    inputs = keras.Input(shape=model.input_shape[1:], name="raw_input")
    scaled = layers.Rescaling(factor, name="input_scaling")(inputs)
    return keras.Model(inputs, model(scaled), name="scaled_model")


def predict_classes(model: keras.Model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    return np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=-1)


def clone(model: keras.Model) -> keras.Model:
    """A deep copy with its own layer objects (tfmot's wrappers otherwise write into the source)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def float_copy(qat_model, like):
    """The float weights of a QAT model in a plain copy of ``like`` (same architecture).

    Only for recipes that explicitly run a method after QAT: the learned quantization
    ranges are dropped, which the report says.
    """
    out = clone(like)
    by_name = {}
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", layer)
        by_name[inner.name] = inner
    for layer in out.layers:
        src = by_name.get(layer.name)
        if src is None or not layer.weights:
            continue
        values = {w.name.split("/")[-1]: w for w in src.weights}
        layer.set_weights([values[w.name.split("/")[-1]].numpy() if w.name.split("/")[-1] in values else w.numpy()
                           for w in layer.weights])
    return out


def architecture_table(model: keras.Model) -> list[dict]:
    rows = []
    for layer in model.layers:
        try:
            shape = layer.output_shape
        except Exception:  # layers with several outputs
            shape = None
        if isinstance(shape, list):
            shape = shape[0]
        rows.append({
            "name": layer.name,
            "type": layer.__class__.__name__,
            "output_shape": [d for d in shape[1:]] if shape else None,
            "params": int(layer.count_params()),
        })
    return rows


# --- saving and safe loading ---------------------------------------------------------------


def save(model: keras.Model, path: Path) -> None:
    """The model as a .keras file, without optimizer state (half the file, of no use to a user).

    The native format has no include_optimizer switch: the optimizer is detached while saving."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        model.optimizer = None
    try:
        model.save(str(path))
    finally:
        if optimizer is not None:
            model.optimizer = optimizer


def _check_layers(config: dict, name: str) -> None:
    """The engine's model check is the shared inspector's: every object anywhere in the config."""
    modelfile.check_config(config, name)


def inspect_model_file(path: str | Path) -> dict:
    """Read a model file's config safely: {'keras_version', 'class_name', 'layers': [class names]}."""
    return modelfile.inspect(path)


def _safe_mode_scope():
    try:
        from tf_keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # a tf_keras without it: the inspector above is the only guard
        import contextlib

        return contextlib.nullcontext()
    return SafeModeScope(True)


def load_model(path: str | Path) -> keras.Model:
    """Load a user's .keras or .h5 model as a tf_keras model, never running code from the file."""
    path = Path(path)
    info = inspect_model_file(path)
    if info["keras_version"].startswith("3"):
        from compression.engine import keras3

        return keras3.convert(path)
    try:
        if path.suffix.lower() == ".keras":
            model = tf_keras.models.load_model(str(path), compile=False, safe_mode=True)
        else:
            # Second line of defence: the legacy .h5 loader ignores safe_mode, but its Lambda
            # refuses bytecode inside this scope.
            with _safe_mode_scope():
                model = tf_keras.models.load_model(str(path), compile=False)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{path.name} could not be loaded: {first[:300]}") from None
    if not isinstance(model, tf_keras.Model):
        raise ModelLoadError(f"{path.name} did not hold a Keras model")
    return model


# --- fitting a model to a dataset ---------------------------------------------------------------


def adapt(model: keras.Model, ds: Dataset, source: str = "the model") -> Dataset:
    """The dataset laid out for the model, or a clear error when they cannot fit."""
    return adapt_input(model, ds, source)[0]


def adapt_input(model: keras.Model, ds: Dataset, source: str = "the model") -> tuple[Dataset, dict]:
    """The dataset laid out for the model, and what was done to its samples (compression.inputs.data.
    adaptation: a spec whose ``sentence`` says it in words; the same spec adapts samples anywhere).

    Same number of values: the samples are only laid out anew (784 vs 28x28 vs 28x28x1).
    Images of another size: zero-padded (centred) when they are no larger than the model's
    input, else resized bilinearly; one channel is copied to the model's three. Anything else
    is refused with a sentence saying what the model expects.
    """
    in_shape = model.input_shape
    if isinstance(in_shape, list):
        raise ModelLoadError(f"{source} has several inputs; only single-input classifiers are supported")
    sample = tuple(in_shape[1:])
    if any(d is None for d in sample):
        raise ModelLoadError(f"{source} has an input of unknown size {list(in_shape[1:])}; fix the input shape")
    out_shape = model.output_shape
    if isinstance(out_shape, list) or len(out_shape) != 2:
        raise ModelLoadError(f"{source} must output one score per class (shape [batch, classes]); it outputs {out_shape}")
    classes = int(out_shape[-1])
    if classes != ds.num_classes:
        raise ModelLoadError(
            f"{source} predicts {classes} classes but dataset {ds.name!r} has {ds.num_classes}"
        )
    spec = data.adaptation(tuple(ds.input_shape), sample, source, ds.name)
    if spec["kind"] == "none":
        return ds, spec
    from dataclasses import replace

    adapted = replace(ds, x_train=data.adapt_samples(ds.x_train, spec), x_val=data.adapt_samples(ds.x_val, spec),
                      x_test=data.adapt_samples(ds.x_test, spec))
    return adapted, spec
