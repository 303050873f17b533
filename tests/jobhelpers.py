"""Shared helpers for the job tests: tiny datasets and recipes, worker processes, polling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def make_npz(path: Path, n_train: int = 200, n_test: int = 100) -> Path:
    """scikit-learn's 8x8 digits (offline), scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    np.savez(path, x_train=x[:n_train], y_train=y[:n_train],
             x_test=x[n_train:n_train + n_test], y_test=y[n_train:n_train + n_test])
    return path


def tiny_recipe(npz: Path, name: str = "t") -> dict:
    """The brief's tiny recipe: 1 baseline epoch, 1 pruning epoch, float32 export."""
    return {"name": name, "dataset": {"npz": str(npz)}, "max_train_samples": None,
            "baseline": {"arch": "lenet_300_100", "epochs": 1, "batch_size": 32},
            "steps": [{"method": "prune", "final_sparsity": 0.5, "initial_sparsity": 0.0,
                       "epochs": 1, "batch_size": 32}],
            "export": "float32", "latency_runs": 2}


def baseline_recipe(npz: Path, name: str = "b", epochs: int = 1, batch_size: int = 32) -> dict:
    """A baseline-only recipe; with many epochs it runs long enough to cancel or kill."""
    return {"name": name, "dataset": {"npz": str(npz)},
            "baseline": {"arch": "lenet_300_100", "epochs": epochs, "batch_size": batch_size},
            "steps": [], "export": "float32", "latency_runs": 2}


def worker_env(home: Path, **extra: str) -> dict:
    env = dict(os.environ)
    env["COMPRESSION_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS)])
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    env.update(extra)
    return env


def start_worker(home: Path, *, workers: int = 1, **env: str) -> subprocess.Popen:
    """A foreground worker (``python -m compression worker``) in its own process group."""
    log = open(home / f"worker-{time.monotonic_ns()}.out", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "compression", "worker", "--home", str(home), "--workers", str(workers)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=worker_env(home, **env),
        cwd=str(home), start_new_session=True,
    )
    log.close()
    from compression import jobs

    wait_for(lambda: jobs.worker_running(home) or proc.poll() is not None, 30, "the worker to start")
    assert proc.poll() is None, f"worker exited with {proc.returncode}: {worker_output(home)}"
    return proc


def stop_worker(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def worker_output(home: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(Path(home).glob("worker-*.out")))


def wait_for(predicate, timeout: float, what: str, poll: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def wait_state(job_id: str, home: Path, states, timeout: float):
    from compression import jobs

    states = (states,) if isinstance(states, str) else tuple(states)
    last = {}

    def check():
        rec = jobs.get_job(job_id, home)
        last["rec"] = rec
        return rec if rec.state in states else None

    try:
        return wait_for(check, timeout, f"job {job_id} to be {'/'.join(states)}")
    except AssertionError as e:
        rec = last.get("rec")
        raise AssertionError(f"{e}; it is {rec and rec.state}: {rec and (rec.error or rec.message)}\n"
                             f"log:\n{jobs.read_log(job_id, home)[-3000:]}\nworker:\n{worker_output(home)}") from None


def fake_worker_env(**extra: str) -> dict:
    """Settings for a worker that runs tests/fake_engine.py instead of TensorFlow."""
    return {"COMPRESSION_RUNNER": "fake_engine:run_recipe", "COMPRESSION_WORKER_PRELOAD": "0", **extra}


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path

