"""What fine-tuning can add to plain cross-entropy on the training split, shared by every method
and the baseline: knowledge distillation from a teacher, label smoothing, and small random shifts.

All three go through one tf.data pipeline: batches of the training split, shifted when asked, and
paired with the teacher's class probabilities computed once per batch in the input pipeline (the
teacher is one model, called outside the student's graph; no wrapper holds a second copy). The
loss then reads the label from the first column of the targets and the teacher's probabilities
from the rest. Without any of them, ``models.fit`` keeps its plain path.
"""

from __future__ import annotations

import numpy as np

import compression  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
import tf_keras

EPS = 1e-7


def wanted(label_smoothing: float = 0.0, augment_shift: int = 0, teacher=None, distill_alpha: float = 0.0) -> bool:
    return bool(label_smoothing or augment_shift or (teacher is not None and distill_alpha > 0))


def shift_images(x, max_shift: int):
    """Each image moved by a random whole number of pixels in [-max_shift, max_shift] along both axes,
    the uncovered border filled with zeros (exact translation, not a wrap-around). (B, H, W) and
    (B, H, W, C) batches; anything else is returned as it is."""
    rank = len(x.shape)
    if rank not in (3, 4) or max_shift <= 0:
        return x
    images = x[..., None] if rank == 3 else x
    batch = tf.shape(images)[0]
    d = tf.cast(tf.random.uniform([batch, 2], -max_shift, max_shift + 1, dtype=tf.int32), tf.float32)
    ones, zeros = tf.ones([batch, 1]), tf.zeros([batch, 1])
    # output pixel (x, y) reads input (x - dx, y - dy): [a0 a1 a2 b0 b1 b2 c0 c1]
    transforms = tf.concat([ones, zeros, -d[:, :1], zeros, ones, -d[:, 1:], zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3], fill_value=0.0,
        interpolation="NEAREST", fill_mode="CONSTANT")
    return out[..., 0] if rank == 3 else out


def teacher_probabilities(teacher, probabilities: bool):
    def call(x):
        out = teacher(x, training=False)
        return out if probabilities else tf.nn.softmax(out)
    return call


def dataset(x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool, augment_shift: int = 0,
            teacher_call=None, seed: int = 0) -> tf.data.Dataset:
    d = tf.data.Dataset.from_tensor_slices((x.astype(np.float32), y.astype(np.float32)))
    if shuffle:
        d = d.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    d = d.batch(batch_size)
    if augment_shift:
        d = d.map(lambda xb, yb: (shift_images(xb, augment_shift), yb))
    if teacher_call is not None:
        d = d.map(lambda xb, yb: (xb, tf.concat([yb[:, None], teacher_call(xb)], axis=1)))
    return d.prefetch(tf.data.AUTOTUNE)


def loss_fn(num_classes: int, from_logits: bool, label_smoothing: float, distill_alpha: float,
            temperature: float, distilling: bool):
    """Cross-entropy with the label from the targets' first column (smoothed when asked), blended with
    T^2 * KL(teacher || student) at temperature T when distilling (Hinton et al. 2015)."""

    def loss(y_true, y_pred):
        label = tf.cast(tf.reshape(y_true[:, 0] if distilling else y_true, [-1]), tf.int32)
        target = tf.one_hot(label, num_classes)
        if label_smoothing:
            target = target * (1.0 - label_smoothing) + label_smoothing / num_classes
        ce = tf_keras.losses.categorical_crossentropy(target, y_pred, from_logits=from_logits)
        if not distilling:
            return ce
        student_logits = y_pred if from_logits else tf.math.log(tf.clip_by_value(y_pred, EPS, 1.0))
        teacher_logits = tf.math.log(tf.clip_by_value(y_true[:, 1:], EPS, 1.0))
        p_teacher = tf.nn.softmax(teacher_logits / temperature)
        log_student = tf.nn.log_softmax(student_logits / temperature)
        kd = tf.reduce_sum(p_teacher * (tf.math.log(tf.clip_by_value(p_teacher, EPS, 1.0)) - log_student), axis=-1)
        return (1.0 - distill_alpha) * ce + distill_alpha * (temperature ** 2) * kd

    return loss


def accuracy_fn(distilling: bool):
    def accuracy(y_true, y_pred):
        label = tf.cast(tf.reshape(y_true[:, 0] if distilling else y_true, [-1]), tf.int64)
        return tf.cast(tf.equal(label, tf.argmax(y_pred, axis=-1)), tf.float32)

    return tf_keras.metrics.MeanMetricWrapper(accuracy, name="accuracy")


__all__ = ["accuracy_fn", "dataset", "loss_fn", "shift_images", "teacher_probabilities", "wanted"]
