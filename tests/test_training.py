"""Training options that let a baseline match the papers: schedules, weight decay, Caffe's LeNet-5."""

import numpy as np
import pytest
import tf_keras

from compression.inputs import data
from compression.engine import models


def test_lenet_5_caffe_has_the_papers_431k_parameters():
    m = models.build("lenet_5_caffe", (28, 28, 1), 10)
    assert m.count_params() == 431_080
    assert [layer.name for layer in m.layers if layer.weights] == ["conv1", "conv2", "fc1", "output"]
    assert models.needs_channel_axis("lenet_5_caffe") and models.needs_channel_axis("lenet_5")
    assert not models.needs_channel_axis("lenet_300_100")
    assert models.build("lenet_5_caffe", (28, 28), 10).count_params() == 431_080  # adds the channel axis


def _lr_at(opt, step: int) -> float:
    lr = opt.get_config()["learning_rate"]  # a number, or a schedule's serialised config
    return float(lr) if not isinstance(lr, dict) else float(tf_keras.optimizers.schedules.deserialize(lr)(step))


def test_schedules_and_weight_decay_build_the_right_optimizer():
    const = models.make_optimizer(1e-2)
    assert type(const).__name__ == "Adam" and _lr_at(const, 0) == pytest.approx(1e-2)
    cos = models.make_optimizer(1e-2, lr_schedule="cosine", epochs=4, steps_per_epoch=10)
    assert _lr_at(cos, 0) == pytest.approx(1e-2) and _lr_at(cos, 20) == pytest.approx(5e-3, rel=1e-3)
    assert _lr_at(cos, 40) == pytest.approx(0.0, abs=1e-9)
    exp = models.make_optimizer(1e-2, lr_schedule="exponential", decay_rate=0.5, steps_per_epoch=10)
    assert [_lr_at(exp, s) for s in (0, 9, 10, 25)] == pytest.approx([1e-2, 1e-2, 5e-3, 2.5e-3])
    adamw = models.make_optimizer(1e-3, weight_decay=1e-4)
    assert type(adamw).__name__ == "AdamW" and adamw.weight_decay == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="lr_schedule"):
        models.make_optimizer(1e-3, lr_schedule="step")


def test_training_with_cosine_and_weight_decay_reports_progress(tiny_npz):
    ds = data.load_npz(tiny_npz)
    events = []
    m = models.train_baseline("lenet_300_100", ds, epochs=2, batch_size=64, seed=0, learning_rate=3e-3,
                              lr_schedule="cosine", weight_decay=1e-3, report=lambda *e: events.append(e))
    batches = int(np.ceil(len(ds.x_train) / 64))
    assert events[-1][:4] == (2, 2, batches, batches)
    assert type(m.optimizer).__name__ == "AdamW"
    assert int(m.optimizer.iterations) == 2 * batches
    assert _lr_at(m.optimizer, 2 * batches) == pytest.approx(0.0, abs=1e-9)  # cosine ends at 0
    assert np.mean(models.predict_classes(m, ds.x_test) == ds.y_test) > 0.5
