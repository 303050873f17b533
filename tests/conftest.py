"""Test set-up shared by every test module.

Importing ``compression`` first sets TF_USE_LEGACY_KERAS before TensorFlow loads.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Two test workers on two cores: one thread each for TensorFlow and its math libraries, instead of two
# thread pools per worker fighting over the same cores (subprocesses inherit this too).
for _var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# Two test workers train at once: latency is timed at once (and flagged as not quiet) instead of waiting.
os.environ.setdefault("COMPRESSION_LATENCY_WAIT_S", "0")
# A page that shows "Something went wrong" fails its test: the page helper re-raises instead.
os.environ.setdefault("COMPRESSION_PAGE_RAISE", "1")
# No page or command starts a background worker by itself; a test that wants one starts it (or sets this to 1).
os.environ.setdefault("COMPRESSION_EMBEDDED_WORKER", "0")
# No test touches the user's own workspace (~/.compression), nor starts a worker there by accident.
if "COMPRESSION_HOME" not in os.environ:
    import tempfile

    os.environ["COMPRESSION_HOME"] = tempfile.mkdtemp(prefix="compression-tests-")
# The tests' training never makes a real job on this machine wait to time its latency (nor the reverse).
os.environ.setdefault("COMPRESSION_ACTIVITY_LOCK", os.path.join(os.environ["COMPRESSION_HOME"], "activity.lock"))

import compression  # noqa: E402,F401

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# The longest files first (measured with --durations): the workers take one file at a time (--dist
# loadfile), so a long file that starts last is the whole suite's tail.
LONGEST_FIRST = ["test_keras3.py", "test_study_examples.py", "test_bench.py", "test_pipeline.py", "test_pages.py",
                 "test_methods.py", "test_e2e_browser.py", "test_hostile.py", "test_quant_noise.py",
                 "test_bench_quant_noise.py", "test_study_examples_more.py", "test_jobs.py", "test_plugins.py",
                 "test_cluster_speed_bench.py"]


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(rank)))  # stable: the rest keep their order


def make_arrays(n_train=300, n_test=100, classes=10, shape=(8, 8), seed=0, noise=0.25):
    """Learnable synthetic images: one random prototype per class plus noise, values in [0, 1]."""
    rng = np.random.default_rng(seed)
    protos = rng.random((classes, *shape)).astype(np.float32)

    def split(n):
        y = np.arange(n) % classes
        rng.shuffle(y)
        x = protos[y] + noise * rng.standard_normal((n, *shape)).astype(np.float32)
        return np.clip(x, 0, 1).astype(np.float32), y.astype(np.int64)

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, **make_arrays())
    return path


def tiny_recipe(npz, steps=(), **overrides) -> dict:
    """A recipe dict that trains a small lenet_300_100 on the tiny data in seconds."""
    recipe = {
        "name": "tiny",
        "dataset": {"npz": str(npz)},
        "baseline": {"arch": "lenet_300_100", "epochs": 3, "batch_size": 32, "seed": 0},
        "steps": list(steps),
        "export": "float32",
        "latency_runs": 3,
    }
    recipe.update(overrides)
    return recipe


def pytest_sessionfinish(session, exitstatus):
    """A worker some test left running in the tests' default workspace is stopped (none should be)."""
    from compression import jobs

    try:
        if jobs.worker_running(os.environ["COMPRESSION_HOME"]):
            jobs.stop_worker(os.environ["COMPRESSION_HOME"])
    except Exception:  # never fail a run over its clean-up
        pass


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty workspace of the test's own (COMPRESSION_HOME), on the local queue."""
    from compression.store import workspace

    h = tmp_path / "home"
    monkeypatch.setenv("COMPRESSION_HOME", str(h))
    monkeypatch.delenv("COMPRESSION_QUEUE", raising=False)
    return workspace.home_dir(h)


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    """A tiny digits-like dataset file, one per test module."""
    from jobhelpers import make_npz

    return make_npz(tmp_path_factory.mktemp("data") / "digits.npz")
