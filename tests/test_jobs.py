"""Background jobs: submit, progress, cancel, faults, workers, command line, run folders.

Everything but the last test runs without TensorFlow: jobs run in this process with
stand-in engines, or in real worker processes that run tests/fake_engine.py. The last
test runs tiny recipes through the real engine in a real worker (``slow``).
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

import compression  # noqa: F401
from compression.cli import main as cli
from compression import jobs
from compression.errors import RecipeError, UserError
from compression.jobs import execute, queue, records
from compression.recipe import Recipe
from compression.store import runs, workspace

from jobhelpers import (
    ROOT,
    baseline_recipe,
    fake_worker_env,
    start_worker,
    stop_worker,
    tiny_recipe,
    wait_for,
    wait_state,
    worker_env,
    worker_output,
    write_json,
)


def _event(i, n, stage="baseline", epoch=1, epochs=1):
    return {"phase": "train", "stage": stage, "stage_index": 0, "stage_count": 2, "epoch": epoch,
            "epochs": epochs, "batch": i, "batches": n, "fraction": i / n, "message": f"{stage}: epoch {epoch}"}


def _disk_error(code=errno.ENOSPC):
    def fail(path, *a, **kw):
        raise OSError(code, os.strerror(code), str(path))

    return fail


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
        wait_for(lambda: "n" in json.loads(path.read_text()), 60, "the writer to start")
        seen = set()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            data = json.loads(path.read_text())  # a torn file would not parse
            assert len(data["body"]) == data["length"]
            seen.add(data.get("n"))
            rec = records.read_status(folder)
            assert rec is not None and rec.id == "20260101-000000-abcdef" and not rec.is_damaged
        assert len(seen) > 5, "the writer did not get going; the test proved nothing"
    finally:
        stop.set()
        writer.join(10)
    leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_artifact_paths_from_a_report_stay_inside_the_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.tflite").write_bytes(b"tfl3")
    (tmp_path / "secret.txt").write_text("not yours")
    for name in ("../secret.txt", "../../etc/passwd", "/etc/passwd", str(tmp_path / "secret.txt"), ".", ""):
        write_json(run / "report.json", {"artifacts": {"tflite": name}})
        found = runs.artifact_path(run, "tflite")
        assert found is None or found == run / "model.tflite", (name, found)  # "" falls back to the default
        assert runs.load_run(run).artifact("tflite") in (None, run / "model.tflite")
    write_json(run / "report.json", {"artifacts": {"tflite": "../secret.txt"}})
    assert runs.artifact_path(run, "tflite") is None
    write_json(run / "report.json", {"artifacts": {"tflite": "model.tflite", "keras": "model.keras"}})
    assert runs.artifact_path(run, "tflite") == run / "model.tflite"
    assert runs.artifact_path(run, "keras") is None  # named, but not there


def test_one_path_resolver_for_submit_and_run(tmp_path, monkeypatch, npz):
    recipe_dir = tmp_path / "recipes"
    recipe_dir.mkdir()
    shutil.copy(npz, recipe_dir / "d.npz")
    monkeypatch.chdir(tmp_path)
    recipe = Recipe.from_dict(tiny_recipe(Path("d.npz")))
    assert workspace.resolve_recipe_paths(recipe, recipe_dir).dataset.npz == str(recipe_dir / "d.npz")
    shutil.copy(npz, tmp_path / "here.npz")  # not beside the recipe, but in the current folder
    recipe = Recipe.from_dict(tiny_recipe(Path("here.npz")))
    assert workspace.resolve_recipe_paths(recipe, recipe_dir).dataset.npz == str(tmp_path / "here.npz")
    with pytest.raises(RecipeError, match="baseline.path: .*none.keras does not exist"):
        workspace.resolve_recipe_paths(Recipe.from_dict(dict(tiny_recipe(npz), baseline={"path": "none.keras"})),
                                       recipe_dir)


# --- submit, queue, cancel (no worker) ------------------------------------------------------------


def test_submit_writes_the_run_folder_and_queues_the_job(home, npz, tmp_path, monkeypatch):
    recipe_dir = tmp_path / "recipes"
    recipe_dir.mkdir()
    (recipe_dir / "d.npz").write_bytes(npz.read_bytes())
    monkeypatch.chdir(tmp_path)  # the npz is relative to the recipe's folder, not to here
    job_id = jobs.submit(Recipe.from_dict(tiny_recipe(Path("d.npz"))), home, base_dir=recipe_dir)

    assert workspace.is_job_id(job_id)
    rec = jobs.get_job(job_id, home)
    assert rec.state == "queued" and rec.kind == "compress" and rec.name == "t" and rec.id == job_id
    assert rec.progress == 0 and rec.created_at and rec.started_at is None
    assert rec.run_dir == str(home / "runs" / job_id)
    stored = json.loads((home / "runs" / job_id / "recipe.json").read_text())
    assert stored["dataset"]["npz"] == str(recipe_dir / "d.npz")
    assert rec.recipe == stored
    assert "submitted" in jobs.read_log(job_id, home)
    assert job_id in queue.pending_ids(queue.client(home))
    assert [r.id for r in jobs.list_jobs(home)] == [job_id]
    assert sorted(os.listdir(home / "runs")) == [job_id]  # no temporary folder left
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


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_disk_at_submit_leaves_nothing_and_says_one_line(home, npz, tmp_path, monkeypatch,
                                                                             capsys, code):
    monkeypatch.setattr("compression.jobs.api.atomic_write_json", _disk_error(code))
    with pytest.raises(OSError):
        jobs.submit(tiny_recipe(npz), home)
    recipe = write_json(tmp_path / "r.json", tiny_recipe(npz))
    assert cli.main(["submit", str(recipe), "--home", str(home)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot write to the workspace") \
        and os.strerror(code) in err[0], err
    assert os.listdir(home / "runs") == []  # nothing half-written, no temporary folder
    assert queue.pending_ids(queue.client(home)) == set()


def test_cancel_of_a_queued_job_removes_it(home, npz):
    first = jobs.submit(tiny_recipe(npz), home)
    second = jobs.submit(tiny_recipe(npz), home)
    rec = jobs.cancel(first, home)
    assert rec.state == "cancelled" and rec.finished_at and rec.message == "cancelled before it started"
    huey = queue.client(home)
    # Huey skips the revoked task; if it did not, the worker's claim skips the record
    task = huey.dequeue()
    assert task.id == first and huey.is_revoked(task)
    assert jobs.execute_job(first, home, runner=_must_not_run, capture_output=False) is None
    assert jobs.get_job(first, home).state == "cancelled"
    assert jobs.get_job(second, home).state == "queued"
    # cancelling a finished job changes nothing
    assert jobs.cancel(first, home).state == "cancelled"
    # a finished job can be removed, an active one cannot
    with pytest.raises(jobs.JobBusy, match="cancel it first"):
        jobs.remove(second, home)
    assert jobs.remove(first, home) == first and not (home / "runs" / first).exists()


def _must_not_run(recipe, out_dir, progress):
    raise AssertionError("a cancelled job ran")


# --- running a job in this process (the worker's code path, stand-in engines) ----------------------


def _progress_writes(home, npz, monkeypatch, step_s):
    """Run a job whose engine sends 2 + 1 epochs of 100 batches and one export event, with
    the clock advanced by ``step_s`` per batch; returns the progress.json writes."""
    job_id = jobs.submit(tiny_recipe(npz), home)
    writes = []
    real = execute.atomic_write_json

    def counting(path, data, fsync=False):
        if Path(path).name == "progress.json":
            writes.append((data["stage"], data.get("epoch"), data.get("batch")))
        return real(path, data, fsync=fsync)

    monkeypatch.setattr(execute, "atomic_write_json", counting)
    now = [1000.0]

    def engine(recipe, out_dir, progress):
        assert isinstance(recipe, Recipe) and out_dir == home / "runs" / job_id
        for stage, epochs in (("baseline", 2), ("prune", 1)):
            for epoch in range(1, epochs + 1):
                for i in range(1, 101):
                    progress(_event(i, 100, stage, epoch, epochs))
                    now[0] += step_s
        progress({"phase": "export", "stage": "export", "stage_index": 2, "stage_count": 2,
                  "fraction": 0.99, "message": "export"})
        return {}

    assert jobs.execute_job(job_id, home, runner=engine, capture_output=False, clock=lambda: now[0]) == "succeeded"
    rec = jobs.get_job(job_id, home)
    assert rec.state == "succeeded" and rec.progress == 1.0 and rec.finished_at and rec.error is None
    assert rec.host and rec.pid == os.getpid()
    assert runs.read_progress(job_id, home)["stage"] == "export"
    return writes


def test_progress_is_throttled_by_its_clock_but_first_last_and_changes_are_written(home, npz, monkeypatch):
    # 1/16 s per batch (exact in binary): one write per 4 batches at PROGRESS_INTERVAL_S = 0.25 s
    assert execute.PROGRESS_INTERVAL_S == 0.25
    writes = _progress_writes(home, npz, monkeypatch, step_s=1 / 16)
    per_epoch = list(range(1, 101, 4)) + [100]  # first batch, every 0.25 s, the last (fraction 1)
    expected = [(s, e, b) for s, e in (("baseline", 1), ("baseline", 2), ("prune", 1)) for b in per_epoch]
    assert writes == expected + [("export", None, None)]


def test_progress_with_a_stopped_clock_writes_only_changes(home, npz, monkeypatch):
    writes = _progress_writes(home, npz, monkeypatch, step_s=0.0)
    assert writes == [("baseline", 1, 1), ("baseline", 1, 100), ("baseline", 2, 1), ("baseline", 2, 100),
                      ("prune", 1, 1), ("prune", 1, 100), ("export", None, None)]


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


def test_a_full_disk_at_the_final_write_never_leaves_the_job_running(home, npz, monkeypatch):
    job_id = jobs.submit(tiny_recipe(npz), home)
    real = records.write_raw

    def full_disk_for_final_states(folder, data, fsync=False):
        if data.get("state") in records.FINAL_STATES:
            raise OSError(errno.ENOSPC, "No space left on device", str(folder / "status.json"))
        return real(folder, data, fsync)

    monkeypatch.setattr(records, "write_raw", full_disk_for_final_states)

    def engine(recipe, out_dir, progress):
        progress(_event(5, 10, "prune", 1, 2))
        return {}

    # the engine succeeded; no attempt to record it got through
    assert jobs.execute_job(job_id, home, runner=engine, capture_output=False) == "succeeded"
    assert json.loads((home / "runs" / job_id / "status.json").read_text())["state"] == "running"
    # the reader decides from liveness: this process lives on, but no longer runs the job
    rec = jobs.get_job(job_id, home)
    assert rec.state == "failed" and rec.error.startswith(records.LOST_END), rec.error
    assert [r.state for r in jobs.list_jobs(home)] == ["failed"]  # and listing does not raise
    monkeypatch.setattr(records, "write_raw", real)  # the disk has room again: the verdict is stored
    assert jobs.get_job(job_id, home).state == "failed"
    assert json.loads((home / "runs" / job_id / "status.json").read_text())["state"] == "failed"


def test_a_run_folder_deleted_under_a_running_job_stops_it_and_stays_deleted(home, npz):
    job_id = jobs.submit(tiny_recipe(npz), home)
    folder = home / "runs" / job_id
    deleted = {}

    def engine(recipe, out_dir, progress):
        for i in range(1, 4000):  # at least 20 s of progress events after the deletion
            progress(_event(i % 50 + 1, 50, "prune", 1 + i // 50, 1000))
            time.sleep(0.005)
        raise AssertionError("the job did not notice")

    def deleter():
        wait_for(lambda: runs.read_progress(job_id, home), 10, "progress")
        for _ in range(50):  # the job keeps writing temp files into it: retry until it is gone
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                break
            time.sleep(0.01)
        deleted["t"] = time.monotonic()

    t = threading.Thread(target=deleter)
    t.start()
    state = jobs.execute_job(job_id, home, runner=engine, capture_output=False)
    t.join()
    assert state == "gone" and "t" in deleted  # stopped by the deletion, long before its engine ran out
    time.sleep(1.2)  # longer than a heartbeat tick: nothing brings it back
    assert not folder.exists()
    assert jobs.list_jobs(home) == [] and jobs.list_damaged(home) == []
    with pytest.raises(jobs.UnknownJob):
        jobs.get_job(job_id, home)


# --- faults without a worker ---------------------------------------------------------------------------


def _fake_running(home, job_id, hold_running_lock=False, **fields):
    """Make a record look like a worker runs it; with ``hold_running_lock`` this process
    holds the run's ``.running`` lock, as the process running a job does (returns the fd)."""
    folder = home / "runs" / job_id
    rec = json.loads((folder / "status.json").read_text())
    rec.update(dict(state="running", started_at=workspace.now_iso(), heartbeat_at=workspace.now_iso(),
                    stage="prune", epoch=1, epochs=2), **fields)
    workspace.atomic_write_json(folder / "status.json", rec)
    return workspace.try_flock(folder / records.RUNNING_FILE) if hold_running_lock else None


def test_a_status_read_finds_a_dead_worker_and_marks_the_job_failed(home, npz):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job_id = jobs.submit(tiny_recipe(npz), home)
    _fake_running(home, job_id, host=records.HOST, pid=dead.pid)
    rec = jobs.get_job(job_id, home)
    assert rec.state == "failed"
    assert rec.error == f"{jobs.WORKER_DIED} during prune (epoch 1/2)"
    assert rec.finished_at
    assert "FAILED: the worker running this job stopped unexpectedly" in jobs.read_log(job_id, home)

    me = records.proc_stat(os.getpid())[1]
    alive = jobs.submit(tiny_recipe(npz), home)
    fd = _fake_running(home, alive, hold_running_lock=True, host=records.HOST, pid=os.getpid(), pid_start=me)
    try:
        assert jobs.get_job(alive, home).state == "running"
    finally:
        os.close(fd)
    # the same live process, no longer holding the job's lock: it went on without recording the end
    assert jobs.get_job(alive, home).error.startswith(records.LOST_END)
    # a live process with the same pid but another start time is not our worker (pid reuse)
    reused = jobs.submit(tiny_recipe(npz), home)
    fd = _fake_running(home, reused, hold_running_lock=True, host=records.HOST, pid=os.getpid(), pid_start=1)
    try:
        assert jobs.get_job(reused, home).state == "failed"
    finally:
        os.close(fd)


def test_a_worker_on_another_host_is_dead_when_its_heartbeat_is_stale(home, npz):
    fresh = jobs.submit(tiny_recipe(npz), home)
    _fake_running(home, fresh, host="other-machine", pid=1)
    stale = jobs.submit(tiny_recipe(npz), home)
    _fake_running(home, stale, host="other-machine", pid=1, heartbeat_at="2020-01-01T00:00:00.000+00:00")
    states = {r.id: r for r in jobs.list_jobs(home)}
    assert states[fresh].state == "running"
    assert states[stale].state == "failed" and "other-machine sent no heartbeat" in states[stale].error


def test_a_job_lost_between_dequeue_and_start_is_queued_again(home, npz):
    lost = jobs.submit(tiny_recipe(npz), home)
    waiting = jobs.submit(tiny_recipe(npz), home)
    huey = queue.client(home)
    assert huey.dequeue().id == lost  # a worker took it, then died before claiming it
    missing = {}
    assert jobs.recover(home, huey, missing, lost_after_s=0.2)["requeued"] == []
    time.sleep(0.3)
    out = jobs.recover(home, huey, missing, lost_after_s=0.2)
    assert out["requeued"] == [lost] and out["errors"] == []
    assert [t.id for t in huey.pending()] == [waiting, lost]
    assert "re-queued" in jobs.read_log(lost, home)
    assert jobs.get_job(lost, home).state == "queued"


DAMAGED = {
    "20260101-000001-aaaaaa": "{not json",
    "20260101-000002-bbbbbb": '{"id": "20260101-000002-bbbbbb", "state": "runn',  # truncated
    "20260101-000003-cccccc": "[1, 2, 3]",
    "20260101-000004-dddddd": '{"state": "running", "pid": "abc", "host": "h"}',
    "20260101-000005-eeeeee": None,  # a folder with no status.json
    "20260101-000006-ffffff": b"\xff\xfe\x00garbage",
}


def test_damaged_records_are_listed_apart_and_never_break_jobs_status_or_the_worker_check(home, npz, capsys):
    good = jobs.submit(tiny_recipe(npz), home)
    for job_id, content in DAMAGED.items():
        folder = home / "runs" / job_id
        folder.mkdir()
        (folder / "recipe.json").write_text("{}")
        if isinstance(content, bytes):
            (folder / "status.json").write_bytes(content)
        elif content is not None:
            (folder / "status.json").write_text(content)

    assert [r.id for r in jobs.list_jobs(home)] == [good]
    damaged = jobs.list_damaged(home)
    assert sorted(r.id for r in damaged) == sorted(DAMAGED)
    for rec in damaged:
        assert rec.state == "damaged" and "status.json" in rec.error and "\n" not in rec.error, rec.error
    assert "missing" in jobs.get_job("20260101-000005-eeeeee", home).error
    assert jobs.get_job("20260101-000004-dddddd", home).state == "damaged"
    assert jobs.wait("20260101-000001-aaaaaa", home, timeout=5).state == "damaged"  # does not hang
    assert jobs.cancel("20260101-000001-aaaaaa", home).state == "damaged"

    out = jobs.recover(home, queue.client(home), {}, lost_after_s=0)
    assert out["errors"] == [] and out["failed"] == []

    assert cli.main(["jobs", "--home", str(home)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 1 + 1 + len(DAMAGED) and good in captured.out
    assert sum(" damaged " in line for line in lines) == len(DAMAGED)
    assert "--remove-damaged" in captured.err
    assert cli.main(["status", "20260101-000003-cccccc", "--home", str(home)]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "damaged"

    assert cli.main(["jobs", "--remove-damaged", "--home", str(home)]) == 0
    assert sorted(capsys.readouterr().out.split()) == sorted(["removed"] * len(DAMAGED) + list(DAMAGED))
    assert runs.list_run_ids(home) == [good] and jobs.get_job(good, home).state == "queued"


# --- command line ------------------------------------------------------------------------------------------


def test_command_line_submit_jobs_status_cancel_logs(home, npz, tmp_path, capsys):
    good = write_json(tmp_path / "r.json", tiny_recipe(npz))
    assert cli.main(["submit", str(good), "--home", str(home)]) == 0
    job_id = capsys.readouterr().out.strip()
    assert workspace.is_job_id(job_id)

    assert cli.main(["jobs", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert job_id in out and "queued" in out

    assert cli.main(["status", job_id, "--home", str(home)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["id"] == job_id and record["state"] == "queued"

    assert cli.main(["logs", job_id, "--home", str(home)]) == 0
    assert "submitted" in capsys.readouterr().out

    assert cli.main(["cancel", job_id, "--home", str(home)]) == 0
    assert "cancelled" in capsys.readouterr().out

    bad = write_json(tmp_path / "bad.json", dict(tiny_recipe(npz), export="int3"))
    assert cli.main(["submit", str(bad), "--home", str(home)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: export: 'int3' is not one of")

    assert cli.main(["status", "20260101-000000-abcdef", "--home", str(home)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no job" in err[0]


def test_control_characters_in_a_job_name_are_never_printed_raw(home, npz, tmp_path, capsys):
    evil = "evil\x1b[2J\x1b]0;owned\x07\r\nname\u202e"
    with pytest.raises(RecipeError, match="name: must be printable text"):
        jobs.submit(tiny_recipe(npz, name=evil), home)  # a recipe refuses such a name outright
    # a record written by something else (an older version, a hand edit) may still hold one
    job_id = jobs.submit(tiny_recipe(npz, name="plain"), home)
    status = Path(jobs.get_job(job_id, home).run_dir) / "status.json"
    status.write_text(json.dumps(dict(json.loads(status.read_text()), name=evil)))
    for argv in (["jobs"], ["jobs", "--json"], ["status", job_id], ["logs", job_id], ["cancel", job_id]):
        assert cli.main([*argv, "--home", str(home)]) == 0
        captured = capsys.readouterr()
        for stream in (captured.out, captured.err):
            assert not any(c in stream for c in "\x1b\x07\r\u202e"), (argv, stream)
    assert cli.main(["jobs", "--home", str(home)]) == 0
    assert r"evil\x1b[2J" in capsys.readouterr().out  # escaped, still readable
    assert jobs.get_job(job_id, home).name == evil  # the record keeps the name as given


def test_python_dash_m_compression_has_the_job_commands_and_survives_a_closed_pipe(home, npz, tmp_path):
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

    # enough records that the listing is larger than a pipe's buffer (64 KiB)
    src = home / "runs" / job_id
    for i in range(120):
        clone = home / "runs" / f"20260101-{i:06d}-abcdef"
        shutil.copytree(src, clone)
        rec = json.loads((clone / "status.json").read_text())
        workspace.atomic_write_json(clone / "status.json", dict(rec, id=clone.name))
    piped = subprocess.run(f"{sys.executable} -m compression jobs --json | head -1", shell=True, env=env,
                           cwd=str(tmp_path), capture_output=True, text=True, timeout=60)
    assert piped.stdout == "[\n" and piped.stderr == "", piped.stderr


# --- run --out -----------------------------------------------------------------------------------------------


@pytest.fixture
def fake_pipeline(monkeypatch):
    """``compression.engine.pipeline`` replaced in this process: ``python -m compression run``
    then runs ``calls[-1]["behaviour"]`` instead of TensorFlow."""
    calls = []
    module = types.ModuleType("compression.engine.pipeline")

    def run_recipe(recipe, out, progress=None):
        call = {"recipe": recipe, "out": Path(out)}
        calls.append(call)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.json").write_text(recipe.to_json())
        (out / "baseline.keras").write_bytes(b"half a model")
        (out / ".partial-1").mkdir(exist_ok=True)
        (out / ".partial-1" / "x").write_bytes(b"x")
        raise module.failure

    module.run_recipe = run_recipe
    module.failure = UserError("simulated failure during baseline")
    monkeypatch.setitem(sys.modules, "compression.engine.pipeline", module)
    return module, calls


def test_run_out_refuses_a_folder_that_is_not_an_earlier_run(tmp_path, npz, fake_pipeline, capsys):
    recipe = write_json(tmp_path / "r.json", baseline_recipe(npz))
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("three years of work")
    assert cli.main(["run", str(recipe), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not empty and holds no earlier run" in err[0]
    assert os.listdir(out) == ["thesis.tex"] and fake_pipeline[1] == []
    (tmp_path / "afile").write_text("x")
    assert cli.main(["run", str(recipe), "--out", str(tmp_path / "afile"), "--quiet"]) == 2


def test_a_failed_run_removes_only_what_it_created(tmp_path, npz, fake_pipeline, capsys, monkeypatch):
    module, calls = fake_pipeline
    recipe_dir = tmp_path / "recipes"
    recipe_dir.mkdir()
    shutil.copy(npz, recipe_dir / "d.npz")
    recipe = write_json(recipe_dir / "r.json", baseline_recipe(Path("d.npz")))
    monkeypatch.chdir(tmp_path)  # relative to the recipe file, as for submit

    # an earlier run of ours, with a file the user added: all of it stays
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    for name in ("report.json", "model.tflite", "notes.txt"):
        (earlier / name).write_text(name)
    assert cli.main(["run", str(recipe), "--out", str(earlier), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == "error: simulated failure during baseline"
    assert calls[-1]["recipe"].dataset.npz == str(recipe_dir / "d.npz")
    assert sorted(os.listdir(earlier)) == ["model.tflite", "notes.txt", "report.json"]  # its recipe.json was new
    assert (earlier / "notes.txt").read_text() == "notes.txt"

    # a new nested folder, and a full disk: every folder the run made goes
    module.failure = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "new" / "x"))
    assert cli.main(["run", str(recipe), "--out", str(tmp_path / "new" / "deeper" / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0], err
    assert not (tmp_path / "new").exists()

    # an empty folder the user made stays, empty
    (tmp_path / "empty").mkdir()
    module.failure = UserError("again")
    assert cli.main(["run", str(recipe), "--out", str(tmp_path / "empty"), "--quiet"]) == 2
    assert (tmp_path / "empty").is_dir() and os.listdir(tmp_path / "empty") == []


# --- workers (real processes, fake engine) -----------------------------------------------------------------


def test_ensure_worker_starts_exactly_one_worker_per_workspace(home, monkeypatch):
    monkeypatch.setenv("COMPRESSION_WORKER_PRELOAD", "0")  # no TensorFlow: nothing runs here
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("COMPRESSION_EMBEDDED_WORKER", "1")  # conftest turns it off for every other test
    assert not jobs.worker_running(home) and not jobs.worker_info(home)["running"]
    # three callers at once, each its own interpreter (as three dashboard processes would be)
    code = "import sys; from compression import jobs; print(jobs.ensure_worker(sys.argv[1]))"
    callers = [subprocess.Popen([sys.executable, "-c", code, str(home)], stdout=subprocess.PIPE, text=True,
                                cwd=str(ROOT)) for _ in range(3)]
    try:
        started = sorted(p.communicate(timeout=90)[0].strip() == "True" for p in callers)
        assert started == [False, False, True]
        info = jobs.worker_info(home)
        assert info["running"] and info["pid"] and info["host"] == records.HOST
        assert jobs.ensure_worker(home) is False
    finally:
        stopped = jobs.stop_worker(home)
    assert stopped and not jobs.worker_running(home)


def test_a_second_worker_on_the_workspace_refuses_and_names_the_first(home):
    env = worker_env(home, **fake_worker_env())
    cmd = [sys.executable, "-m", "compression", "worker", "--home", str(home), "--workers", "1"]
    outs = [open(home / f"two-{i}.err", "w+b") for i in range(2)]
    procs = [subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=o,
                              start_new_session=True) for o in outs]  # started at once
    try:
        wait_for(lambda: any(p.poll() is not None for p in procs), 30, "one of two workers to give up")
        time.sleep(1.0)
        loser = [i for i, p in enumerate(procs) if p.poll() is not None]
        assert len(loser) == 1, [p.poll() for p in procs]
        lost, runner = procs[loser[0]], procs[1 - loser[0]]
        assert lost.returncode == 1
        outs[loser[0]].seek(0)
        err = outs[loser[0]].read().decode().strip().splitlines()
        assert len(err) == 1 and f"pid {runner.pid} on {records.HOST}" in err[0], err
        assert jobs.worker_info(home)["pid"] == runner.pid
        later = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert later.returncode == 1 and f"pid {runner.pid}" in later.stderr and later.stderr.count("\n") == 1
    finally:
        for p in procs:
            stop_worker(p)
        for o in outs:
            o.close()
    assert not jobs.worker_running(home)


def test_a_cancel_the_engine_ignores_is_forced_by_ending_the_process(home, npz):
    """The job's own fallback when the engine does not come back to its progress callback."""
    proc = start_worker(home, **fake_worker_env(COMPRESSION_CANCEL_GRACE="1"))
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


def test_a_cancel_ends_a_hung_job_within_its_grace_whatever_the_job_does(home, npz, monkeypatch):
    """The job's process is stopped (SIGSTOP: its heartbeat thread cannot act either): the
    canceller kills it once the grace period has passed."""
    grace_s = 2.0
    proc = start_worker(home, **fake_worker_env(COMPRESSION_CANCEL_GRACE=str(grace_s)))
    try:
        frozen = jobs.submit(baseline_recipe(npz, name="frozen", epochs=5), home)
        after = jobs.submit(baseline_recipe(npz, name="after", epochs=1), home)
        rec = wait_state(frozen, home, "running", 30)
        wait_for(lambda: (records.proc_stat(rec.pid) or ("?",))[0] == "T", 10, "the job's process to hang")
        monkeypatch.setenv("COMPRESSION_CANCEL_GRACE", str(grace_s))
        t0 = time.monotonic()
        done = jobs.cancel(frozen, home, wait_s=grace_s + 10)
        took = time.monotonic() - t0
        print(f"\ncancel of a hung job: ended after {took:.1f} s (grace {grace_s:.0f} s)")
        assert done.state == "cancelled" and "its worker process was killed" in done.message, done.message
        assert grace_s <= took < grace_s + records.FORCE_MARGIN_S + 1
        wait_for(lambda: not records.pid_alive(rec.pid, rec.pid_start), 10, "the hung process to be gone")
        assert wait_state(after, home, ("succeeded", "failed"), 30).state == "succeeded"
        assert jobs.get_job(frozen, home).state == "cancelled"  # the consumer's own check changes nothing
    finally:
        stop_worker(proc)


def test_sigkill_mid_job_fails_that_job_and_a_new_process_runs_the_next(home, npz):
    proc = start_worker(home, **fake_worker_env())
    try:
        victim = jobs.submit(baseline_recipe(npz, "victim", epochs=1000), home)
        survivor = jobs.submit(baseline_recipe(npz, "survivor"), home)
        rec = wait_for(lambda: (r := jobs.get_job(victim, home)).epoch and r, 30, "the victim to run")
        assert rec.pid != proc.pid  # the job runs in a worker process forked by the consumer
        os.kill(rec.pid, signal.SIGKILL)  # what the kernel's out-of-memory killer does
        dead = wait_state(victim, home, ("failed", "succeeded", "cancelled"), 30)
        assert dead.state == "failed"
        assert "killed by SIGKILL" in dead.error or dead.error.startswith(jobs.WORKER_DIED), dead.error
        assert "during baseline" in dead.error
        assert "FAILED" in jobs.read_log(victim, home)
        after = wait_state(survivor, home, ("succeeded", "failed"), 30)
        assert after.state == "succeeded" and after.pid != rec.pid
    finally:
        stop_worker(proc)


def test_a_killed_worker_loses_no_queued_job_and_a_new_worker_runs_it(home, npz):
    proc = start_worker(home, **fake_worker_env())
    victim = jobs.submit(baseline_recipe(npz, "victim", epochs=1000), home)
    queued = jobs.submit(baseline_recipe(npz, "queued"), home)
    try:
        wait_for(lambda: jobs.get_job(victim, home).epoch, 30, "the victim to run")
    finally:
        stop_worker(proc, signal.SIGKILL)  # the whole worker: consumer and its processes
    # a status read finds the dead worker (once the kernel has finished off its process)
    dead = wait_state(victim, home, ("failed", "succeeded", "cancelled"), 30)
    assert dead.state == "failed" and dead.error.startswith(jobs.WORKER_DIED), dead.error
    assert jobs.get_job(queued, home).state == "queued"
    # the lock goes with the last of the killed group's processes (forked job processes die a moment later)
    wait_for(lambda: not jobs.worker_running(home), 20, "the killed worker's lock to be released")
    proc = start_worker(home, **fake_worker_env())
    try:
        assert wait_state(queued, home, ("succeeded", "failed"), 30).state == "succeeded"
    finally:
        stop_worker(proc)


# --- the real engine in a real worker (one test: the path the fakes stand in for) -----------------------


@pytest.mark.slow
def test_two_submitted_jobs_both_finish_in_order_through_the_real_engine(home, npz):
    proc = start_worker(home)
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
    try:
        t0 = time.monotonic()
        first = jobs.submit(tiny_recipe(npz, "first"), home)
        second = jobs.submit(tiny_recipe(npz, "second"), home)
        assert jobs.get_job(second, home).state == "queued"
        a = wait_state(first, home, ("succeeded", "failed"), 180)
        b = wait_state(second, home, ("succeeded", "failed"), 120)
        print(f"\ntwo tiny jobs, submit to both succeeded: {time.monotonic() - t0:.1f} s")
    finally:
        stop.set()
        t.join(5)
        stop_worker(proc)
    assert (a.state, b.state) == ("succeeded", "succeeded"), (a.error, b.error, worker_output(home))
    assert a.started_at < a.finished_at <= b.started_at  # one worker process: the second waited
    assert errors == []
    for rec in (a, b):
        folder = Path(rec.run_dir)
        report = runs.read_report(folder)
        assert report["final"]["export"] == "float32"
        assert runs.artifact_path(folder, "tflite") == folder / "model.tflite"
        assert runs.load_run(folder).artifact("tflite") == folder / "model.tflite"
        assert rec.progress == 1.0 and rec.stage == "export"
        log = jobs.read_log(rec.id, home)
        assert "started on" in log and "SUCCEEDED" in log
