"""The Redis queue: a job submitted on one "machine" runs on a worker of another.

Starts a real redis-server on loopback (Debian's ``redis-server`` package); skipped, with
the reason, when it cannot start. The worker sees the shared workspace under another path
(a symlink standing in for a network mount), as a second machine would. The worker runs
tests/fake_engine.py: this tests the queue, not the engine (tests/test_jobs.py has that).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

import compression  # noqa: F401
from compression import jobs
from compression.store import runs, workspace

from jobhelpers import baseline_recipe, fake_worker_env, make_npz, start_worker, stop_worker, wait_state


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (Debian package: redis-server)")
    folder = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder), "--daemonize", "no"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out = proc.stdout.read().decode(errors="replace")[-500:] if proc.stdout else ""
                pytest.skip(f"redis-server did not start on 127.0.0.1:{port}: {out}")
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_a_job_runs_end_to_end_through_redis_on_another_machines_worker(redis_url, tmp_path, monkeypatch):
    home = workspace.home_dir(tmp_path / "shared")
    mount = tmp_path / "mnt-on-worker-machine"
    os.symlink(home, mount)
    queue = f"test{os.getpid()}"
    monkeypatch.setenv("COMPRESSION_QUEUE", redis_url)
    monkeypatch.setenv("COMPRESSION_QUEUE_NAME", queue)
    npz = make_npz(tmp_path / "digits.npz")

    job_id = jobs.submit(baseline_recipe(npz, "via-redis"), home)
    import redis

    r = redis.Redis.from_url(redis_url)
    assert r.llen(f"huey.redis.{queue}") == 1  # the job waits in Redis, not in SQLite
    assert jobs.get_job(job_id, home).state == "queued"

    worker = start_worker(mount, COMPRESSION_QUEUE=redis_url, COMPRESSION_QUEUE_NAME=queue, **fake_worker_env())
    try:
        rec = wait_state(job_id, home, ("succeeded", "failed"), 60)
    finally:
        stop_worker(worker)
    assert rec.state == "succeeded", rec.error
    assert rec.run_dir == str(home / "runs" / job_id)  # each side sees the run under its own path
    report = runs.read_report(job_id, home)
    assert report["fake"] and report["recipe"]["name"] == "via-redis"
    assert r.llen(f"huey.redis.{queue}") == 0
    assert not (home / "queue.db").exists()
