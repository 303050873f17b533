"""Background jobs: submit, progress, cancel, faults, workers, command line.

The first part runs jobs in this process or without TensorFlow (seconds). The second part
runs tiny recipes through the real engine in real worker processes (``slow``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import compression  # noqa: F401
from compression import jobs
from compression.store import runs, workspace
from compression.errors import RecipeError
from compression.recipe import Recipe

from jobhelpers import (
    ROOT,
    baseline_recipe,
    make_npz,
    start_worker,
    stop_worker,
    tiny_recipe,
    wait_for,
    wait_state,
    worker_env,
    write_json,
)


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("COMPRESSION_HOME", str(h))
    monkeypatch.delenv("COMPRESSION_QUEUE", raising=False)
    return workspace.home_dir(h)


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    return make_npz(tmp_path_factory.mktemp("data") / "digits.npz")


def _event(i, n, stage="baseline", epoch=1, epochs=1):
    return {"phase": "train", "stage": stage, "stage_index": 0, "stage_count": 2, "epoch": epoch,
            "epochs": epochs, "batch": i, "batches": n, "fraction": i / n, "message": f"{stage}: epoch {epoch}"}


# --- workspace files ---------------------------------------------------------------------------


def _rewrite_forever(path: str, stop) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        body = "x" * (50_000 + (i % 7) * 10_000)
        workspace.atomic_write_json(path, {"id": "20260101-000000-abcdef", "state": "running", "n": i,
                                           "body": body, "length": len(body)})


def test_readers_never_see_a_torn_status_file(tmp_path):
    """A process rewrites a large status.json as fast as it can; every read is whole."""
    folder = tmp_path / "runs" / "20260101-000000-abcdef"
    folder.mkdir(parents=True)
    path = folder / "status.json"
    workspace.atomic_write_json(path, {"id": "20260101-000000-abcdef", "state": "queued", "body": "", "length": 0})
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    writer = ctx.Process(target=_rewrite_forever, args=(str(path), stop))
    writer.start()
    try:
        seen = set()
        deadline = time.monotonic() + 2.0
        reads = 0
        while time.monotonic() < deadline:
            data = json.loads(path.read_text())  # a torn file would not parse
            assert len(data["body"]) == data["length"]
            seen.add(data.get("n"))
            rec = runs.read_status(folder)
            assert rec is not None and rec.id == "20260101-000000-abcdef"
            reads += 1
        assert len(seen) > 5, "the writer did not get going; the test proved nothing"
    finally:
        stop.set()
        writer.join(10)
    leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


# --- submit, queue, cancel (no worker) ------------------------------------------------------------


def test_submit_writes_the_run_folder_and_queues_the_job(home, npz, tmp_path, monkeypatch):
    recipe_dir = tmp_path / "recipes"
    recipe_dir.mkdir()
    (recipe_dir / "d.npz").write_bytes(npz.read_bytes())
    monkeypatch.chdir(tmp_path)  # the npz is relative to the recipe's folder, not to here
    job_id = jobs.submit(Recipe.from_dict(tiny_recipe(Path("d.npz"))), home, base_dir=recipe_dir)

    assert workspace.is_job_id(job_id)
    rec = jobs.get_job(job_id, home)
    assert rec.state == "queued" and rec.kind == "compress" and rec.name == "t"
    assert rec.progress == 0 and rec.created_at and rec.started_at is None
    assert rec.run_dir == str(home / "runs" / job_id)
    stored = json.loads((home / "runs" / job_id / "recipe.json").read_text())
    assert stored["dataset"]["npz"] == str(recipe_dir / "d.npz")
    assert rec.recipe == stored
    assert "submitted" in jobs.read_log(job_id, home)
    assert job_id in jobs._pending_ids(jobs._client(home))
    assert [r.id for r in jobs.list_jobs(home)] == [job_id]
    # a unique end of the id is enough
    assert jobs.get_job(job_id[-6:], home).id == job_id


def test_submit_rejects_missing_files_and_unknown_ids(home, tmp_path):
    with pytest.raises(RecipeError, match="dataset.npz: .*nothere.npz does not exist"):
        jobs.submit(Recipe.from_dict(tiny_recipe(tmp_path / "nothere.npz")), home)
    assert runs.list_run_ids(home) == []
    with pytest.raises(KeyError, match="no job"):
        jobs.get_job("20260101-000000-abcdef", home)
    with pytest.raises(KeyError):
        jobs.get_job("../../etc", home)


def test_cancel_of_a_queued_job_removes_it(home, npz):
    first = jobs.submit(tiny_recipe(npz), home)
    second = jobs.submit(tiny_recipe(npz), home)
    rec = jobs.cancel(first, home)
    assert rec.state == "cancelled" and rec.finished_at and rec.message == "cancelled before it started"
    huey = jobs._client(home)
    # Huey skips the revoked task; if it did not, the worker's claim skips the record
    task = huey.dequeue()
    assert task.id == first and huey.is_revoked(task)
    assert jobs.execute_job(first, home, runner=_must_not_run, capture_output=False) is None
    assert jobs.get_job(first, home).state == "cancelled"
    assert jobs.get_job(second, home).state == "queued"
    # cancelling a finished job changes nothing
    assert jobs.cancel(first, home).state == "cancelled"


def _must_not_run(recipe, out_dir, progress):
    raise AssertionError("a cancelled job ran")


# --- running a job in this process (the worker's code path, fake engines) --------------------------


def test_progress_is_throttled_but_first_last_and_stage_changes_are_written(home, npz, monkeypatch):
    job_id = jobs.submit(tiny_recipe(npz), home)
    writes = []
    real = jobs.atomic_write_json

    def counting(path, data, fsync=False):
        if Path(path).name == "progress.json":
            writes.append(dict(data))
        return real(path, data, fsync=fsync)

    monkeypatch.setattr(jobs, "atomic_write_json", counting)
    seen_by_engine = []

    def engine(recipe, out_dir, progress):
        assert isinstance(recipe, Recipe) and out_dir == home / "runs" / job_id
        for stage, epochs in (("baseline", 2), ("prune", 1)):
            for epoch in range(1, epochs + 1):
                for i in range(1, 101):
                    event = _event(i, 100, stage, epoch, epochs)
                    seen_by_engine.append(event)
                    progress(event)
                    time.sleep(0.004)  # 300 events over ~1.3 s
        progress({"phase": "export", "stage": "export", "stage_index": 2, "stage_count": 2,
                  "fraction": 0.99, "message": "export"})
        return {}

    t0 = time.monotonic()
    assert jobs.execute_job(job_id, home, runner=engine, capture_output=False) == "succeeded"
    wall = time.monotonic() - t0
    # at most ~4 a second, plus one per stage/epoch change, plus the first
    assert len(writes) <= wall / jobs.PROGRESS_INTERVAL_S + 6, len(writes)
    assert len(writes) < len(seen_by_engine) / 10
    assert writes[0]["batch"] == 1 and writes[0]["stage"] == "baseline"
    changes = [(w["stage"], w.get("epoch"), w.get("batch")) for w in writes]
    assert ("baseline", 2, 1) in changes and ("prune", 1, 1) in changes  # epoch and stage changes
    assert writes[-1]["stage"] == "export"  # the last event
    assert runs.read_progress(job_id, home)["stage"] == "export"
    rec = jobs.get_job(job_id, home)
    assert rec.state == "succeeded" and rec.progress == 1.0 and rec.finished_at and rec.error is None
    assert rec.host and rec.pid == os.getpid()


def test_a_running_job_cancelled_ends_cancelled_with_its_log_kept(home, npz):
    job_id = jobs.submit(tiny_recipe(npz), home)
    cancelled_at = {}

    def engine(recipe, out_dir, progress):
        os.write(2, b"engine output before the cancel\n")  # fd level, as C++ code or a worker's print
        for i in range(1, 100_000):
            progress(_event(i % 50 + 1, 50, "prune", 1 + i // 50, 1000))
            time.sleep(0.01)
        raise AssertionError("not cancelled")

    def canceller():
        wait_for(lambda: jobs.get_job(job_id, home).state == "running", 10, "running")
        time.sleep(0.3)
        rec = jobs.cancel(job_id, home)
        cancelled_at["t"] = time.monotonic()
        cancelled_at["rec"] = rec

    t = threading.Thread(target=canceller)
    t.start()
    state = jobs.execute_job(job_id, home, runner=engine, capture_output=True)
    stopped_at = time.monotonic()
    t.join()
    assert state == "cancelled"
    assert cancelled_at["rec"].state == "running" and cancelled_at["rec"].cancel_requested
    assert stopped_at - cancelled_at["t"] < 5
    rec = jobs.get_job(job_id, home)
    assert rec.state == "cancelled" and rec.finished_at and rec.stage == "prune"
    assert rec.message.startswith("cancelled by user during prune")
    assert not rec.cancel_requested
    log = jobs.read_log(job_id, home)
    assert "engine output before the cancel" in log and "cancel requested" in log and "CANCELLED" in log


def test_a_failing_recipe_keeps_its_traceback_and_a_one_line_reason(home, npz):
    job_id = jobs.submit(tiny_recipe(npz), home)

    def engine(recipe, out_dir, progress):
        progress(_event(1, 10))
        raise ValueError("shapes (3,) and (4,) do not match\nmore detail on a second line")

    assert jobs.execute_job(job_id, home, runner=engine, capture_output=False) == "failed"
    rec = jobs.get_job(job_id, home)
    assert rec.state == "failed"
    assert rec.error == "ValueError: shapes (3,) and (4,) do not match"
    log = jobs.read_log(job_id, home)
    assert "Traceback (most recent call last)" in log and "more detail on a second line" in log


# --- faults without a worker ---------------------------------------------------------------------------


def _fake_running(home, job_id, **fields):
    folder = home / "runs" / job_id
    rec = json.loads((folder / "status.json").read_text())
    rec.update(state="running", started_at=workspace.now_iso(), heartbeat_at=workspace.now_iso(),
               stage="prune", epoch=1, epochs=2, **fields)
    workspace.atomic_write_json(folder / "status.json", rec)


def test_a_status_read_finds_a_dead_worker_and_marks_the_job_failed(home, npz):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job_id = jobs.submit(tiny_recipe(npz), home)
    _fake_running(home, job_id, host=jobs._HOST, pid=dead.pid)
    rec = jobs.get_job(job_id, home)
    assert rec.state == "failed"
    assert rec.error == f"{jobs.WORKER_DIED} during prune (epoch 1/2)"
    assert rec.finished_at
    assert "FAILED: the worker running this job stopped unexpectedly" in jobs.read_log(job_id, home)

    # a live process with the same pid but another start time is not our worker (pid reuse)
    alive = jobs.submit(tiny_recipe(npz), home)
    _fake_running(home, alive, host=jobs._HOST, pid=os.getpid(), pid_start=jobs._proc_stat(os.getpid())[1])
    assert jobs.get_job(alive, home).state == "running"
    reused = jobs.submit(tiny_recipe(npz), home)
    _fake_running(home, reused, host=jobs._HOST, pid=os.getpid(), pid_start=1)
    assert jobs.get_job(reused, home).state == "failed"


def test_a_worker_on_another_host_is_dead_when_its_heartbeat_is_stale(home, npz, monkeypatch):
    fresh = jobs.submit(tiny_recipe(npz), home)
    _fake_running(home, fresh, host="other-machine", pid=1)
    stale = jobs.submit(tiny_recipe(npz), home)
    _fake_running(home, stale, host="other-machine", pid=1)
    folder = home / "runs" / stale
    rec = json.loads((folder / "status.json").read_text())
    rec["heartbeat_at"] = "2020-01-01T00:00:00.000+00:00"
    workspace.atomic_write_json(folder / "status.json", rec)
    states = {r.id: r for r in jobs.list_jobs(home)}
    assert states[fresh].state == "running"
    assert states[stale].state == "failed" and "other-machine sent no heartbeat" in states[stale].error


def test_a_job_lost_between_dequeue_and_start_is_queued_again(home, npz):
    lost = jobs.submit(tiny_recipe(npz), home)
    waiting = jobs.submit(tiny_recipe(npz), home)
    huey = jobs._client(home)
    assert huey.dequeue().id == lost  # a worker took it, then died before claiming it
    missing = {}
    assert jobs.recover(home, huey, missing, lost_after_s=0.2) == {"failed": [], "requeued": []}
    time.sleep(0.3)
    assert jobs.recover(home, huey, missing, lost_after_s=0.2) == {"failed": [], "requeued": [lost]}
    assert [t.id for t in huey.pending()] == [waiting, lost]
    assert "re-queued" in jobs.read_log(lost, home)
    assert jobs.get_job(lost, home).state == "queued"


# --- command line ------------------------------------------------------------------------------------------


def test_command_line_submit_jobs_status_cancel_logs(home, npz, tmp_path, capsys):
    from compression.jobs import cli as jobs_cli

    good = write_json(tmp_path / "r.json", tiny_recipe(npz))
    assert jobs_cli.main(["submit", str(good), "--home", str(home)]) == 0
    job_id = capsys.readouterr().out.strip()
    assert workspace.is_job_id(job_id)

    assert jobs_cli.main(["jobs", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert job_id in out and "queued" in out

    assert jobs_cli.main(["status", job_id, "--home", str(home)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["id"] == job_id and record["state"] == "queued"

    assert jobs_cli.main(["logs", job_id, "--home", str(home)]) == 0
    assert "submitted" in capsys.readouterr().out

    assert jobs_cli.main(["cancel", job_id, "--home", str(home)]) == 0
    assert "cancelled" in capsys.readouterr().out

    bad = write_json(tmp_path / "bad.json", dict(tiny_recipe(npz), export="int3"))
    assert jobs_cli.main(["submit", str(bad), "--home", str(home)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: export: 'int3' is not one of")

    assert jobs_cli.main(["status", "20260101-000000-abcdef", "--home", str(home)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no job" in err[0]


def test_python_dash_m_compression_has_the_job_commands(home, npz, tmp_path):
    """The real entry point, as a user types it (no TensorFlow is loaded for these)."""
    recipe = write_json(tmp_path / "r.json", tiny_recipe(npz))
    env = worker_env(home)
    run = lambda *a: subprocess.run([sys.executable, "-m", "compression", *a], env=env, cwd=str(tmp_path),
                                    capture_output=True, text=True, timeout=60)
    sub = run("submit", str(recipe))
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip()
    status = run("status", job_id)
    assert status.returncode == 0 and json.loads(status.stdout)["state"] == "queued"
    unknown = run("cancel", "nope-nope")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1


# --- the embedded worker --------------------------------------------------------------------------------------


def _ensure(home: str, out) -> None:
    out.put(jobs.ensure_worker(home))


def test_ensure_worker_starts_exactly_one_worker_per_workspace(home, monkeypatch):
    monkeypatch.setenv("COMPRESSION_WORKER_PRELOAD", "0")  # no TensorFlow: nothing runs here
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    assert not jobs.worker_running(home) and not jobs.worker_info(home)["running"]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    callers = [ctx.Process(target=_ensure, args=(str(home), out)) for _ in range(3)]
    try:
        for p in callers:
            p.start()
        for p in callers:
            p.join(60)
        started = sorted(out.get(timeout=5) for _ in callers)
        assert started == [False, False, True]
        info = jobs.worker_info(home)
        assert info["running"] and info["pid"] and info["host"] == jobs._HOST
        assert jobs.ensure_worker(home) is False
    finally:
        stopped = jobs.stop_worker(home)
    assert stopped and not jobs.worker_running(home)


def test_a_cancel_the_engine_ignores_is_forced_by_ending_the_process(home, npz):
    """The fallback when the engine does not come back to its progress callback."""
    proc = start_worker(home, COMPRESSION_RUNNER="fake_engine:run_recipe", COMPRESSION_CANCEL_GRACE="1",
                        COMPRESSION_WORKER_PRELOAD="0")
    try:
        deaf = jobs.submit(dict(baseline_recipe(npz, name="deaf", epochs=1000)), home)
        after = jobs.submit(dict(baseline_recipe(npz, name="after", epochs=1)), home)
        wait_state(deaf, home, "running", 30)
        jobs.cancel(deaf, home)
        rec = wait_state(deaf, home, ("cancelled", "failed"), 30)
        assert rec.state == "cancelled", rec.error
        assert "its worker process was stopped" in rec.message
        assert wait_state(after, home, ("succeeded", "failed"), 30).state == "succeeded"
    finally:
        stop_worker(proc)


# --- real engine, real workers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory):
    return workspace.home_dir(tmp_path_factory.mktemp("jobs") / "home")


@pytest.fixture(scope="module")
def shared_worker(shared_home):
    """One worker for the real-engine tests below, started with the real CLI."""
    proc = start_worker(shared_home, module="compression")
    yield proc
    stop_worker(proc)


@pytest.mark.slow
def test_two_submitted_jobs_both_finish_in_order(shared_home, shared_worker, npz):
    home = shared_home
    errors = []
    stop = threading.Event()

    def reader():  # the dashboard's view, polled while the worker writes
        while not stop.is_set():
            try:
                for rec in jobs.list_jobs(home):
                    runs.read_progress(rec.id, home)
                    assert 0.0 <= rec.progress <= 1.0
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
            time.sleep(0.02)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t0 = time.monotonic()
    first = jobs.submit(tiny_recipe(npz, "first"), home)
    second = jobs.submit(tiny_recipe(npz, "second"), home)
    assert jobs.get_job(second, home).state == "queued"
    a = wait_state(first, home, ("succeeded", "failed"), 120)
    b = wait_state(second, home, ("succeeded", "failed"), 120)
    stop.set()
    t.join(5)
    print(f"\ntwo tiny jobs, submit to both succeeded: {time.monotonic() - t0:.1f} s")
    assert (a.state, b.state) == ("succeeded", "succeeded"), (a.error, b.error)
    assert a.started_at < a.finished_at <= b.started_at  # one worker: the second waited
    assert errors == []
    for rec in (a, b):
        folder = Path(rec.run_dir)
        report = runs.read_report(folder)
        assert report["final"]["export"] == "float32"
        assert runs.artifact_path(folder, "tflite") == folder / "model.tflite"
        assert rec.progress == 1.0 and rec.stage == "export"
        log = jobs.read_log(rec.id, home)
        assert "started on" in log and "SUCCEEDED" in log


@pytest.mark.slow
def test_a_running_job_cancelled_ends_cancelled_within_seconds(shared_home, shared_worker, npz):
    home = shared_home
    job_id = jobs.submit(baseline_recipe(npz, "long", epochs=1000, batch_size=8), home)
    wait_for(lambda: (jobs.get_job(job_id, home).epoch or 0) >= 2, 60, "training to reach epoch 2")
    t0 = time.monotonic()
    assert jobs.cancel(job_id, home).cancel_requested
    rec = wait_state(job_id, home, ("cancelled", "failed", "succeeded"), 30)
    took = time.monotonic() - t0
    print(f"\ncancel to cancelled: {took:.2f} s")
    assert rec.state == "cancelled" and rec.message.startswith("cancelled by user during baseline")
    assert runs.read_report(job_id, home) is None
    log = jobs.read_log(job_id, home)
    assert "started on" in log and "CANCELLED" in log
    # the worker goes on with the next job
    nxt = jobs.submit(baseline_recipe(npz, "after-cancel"), home)
    assert wait_state(nxt, home, ("succeeded", "failed"), 60).state == "succeeded"


@pytest.mark.slow
def test_a_failing_recipe_fails_with_a_one_line_reason(shared_home, shared_worker, tmp_path):
    import numpy as np

    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((20, 8, 8), np.float32), y_train=np.zeros(20, np.int64))  # no test split
    job_id = jobs.submit(baseline_recipe(bad, "bad-data"), shared_home)
    rec = wait_state(job_id, shared_home, ("succeeded", "failed"), 60)
    assert rec.state == "failed" and rec.error and "\n" not in rec.error
    assert "Traceback" in jobs.read_log(job_id, shared_home)


@pytest.mark.slow
def test_sigkill_mid_job_fails_that_job_and_a_new_process_runs_the_next(shared_home, shared_worker, npz):
    home = shared_home
    victim = jobs.submit(baseline_recipe(npz, "victim", epochs=1000, batch_size=8), home)
    survivor = jobs.submit(baseline_recipe(npz, "survivor"), home)
    rec = wait_for(lambda: (r := jobs.get_job(victim, home)).epoch and r, 60, "the victim to train")
    assert rec.pid != shared_worker.pid  # the job runs in a worker process forked by the consumer
    os.kill(rec.pid, signal.SIGKILL)  # what the kernel's out-of-memory killer does
    dead = wait_state(victim, home, ("failed", "succeeded", "cancelled"), 30)
    assert dead.state == "failed"
    assert "killed by SIGKILL" in dead.error or dead.error.startswith(jobs.WORKER_DIED), dead.error
    assert "during baseline" in dead.error
    assert "FAILED" in jobs.read_log(victim, home)
    after = wait_state(survivor, home, ("succeeded", "failed"), 90)
    assert after.state == "succeeded" and after.pid != rec.pid


@pytest.mark.slow
def test_a_killed_worker_loses_no_queued_job_and_a_new_worker_runs_it(home, npz):
    proc = start_worker(home)
    victim = jobs.submit(baseline_recipe(npz, "victim", epochs=1000, batch_size=8), home)
    queued = jobs.submit(baseline_recipe(npz, "queued"), home)
    try:
        wait_for(lambda: jobs.get_job(victim, home).epoch, 60, "the victim to train")
    finally:
        stop_worker(proc, signal.SIGKILL)  # the whole worker: consumer and its processes
    # a status read finds the dead worker (once the kernel has finished off its process)
    dead = wait_state(victim, home, ("failed", "succeeded", "cancelled"), 30)
    assert dead.state == "failed" and dead.error.startswith(jobs.WORKER_DIED), dead.error
    assert jobs.get_job(queued, home).state == "queued"
    assert not jobs.worker_running(home)
    proc = start_worker(home)
    try:
        assert wait_state(queued, home, ("succeeded", "failed"), 90).state == "succeeded"
    finally:
        stop_worker(proc)
