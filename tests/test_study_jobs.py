"""Studies on real worker processes running tests/fake_engine.py (no TensorFlow): a study's runs
spread over two worker slots, a study never holds a slot, a killed worker leaves it going on once a
worker is back, cancelling it cancels its queued and running runs, and identical runs are shared."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime


import compression  # noqa: F401
from compression import jobs
from compression.jobs import studies
from compression.store import workspace
from compression.studies import record as rec

from jobhelpers import ROOT, fake_worker_env, start_worker, stop_worker, wait_for, worker_env, write_json


def sweep(npz, name="s", levels=(0.5, 0.8, 0.9), epochs=1) -> dict:
    return {"kind": "sweep", "name": name, "dataset": {"npz": str(npz)},
            "baseline": {"arch": "lenet_300_100", "epochs": epochs}, "levels": list(levels), "epochs": 1}


def wait_study(study_id, home, states=("succeeded",), timeout=90):
    last = {}

    def check():
        last["r"] = studies.get_study(study_id, home)
        return last["r"] if last["r"]["state"] in states else None

    try:
        return wait_for(check, timeout, f"study {study_id} to be {'/'.join(states)}", poll=0.3)
    except AssertionError as e:
        r = last.get("r") or {}
        raise AssertionError(f"{e}; it is {r.get('state')}: {r.get('error') or r.get('message')}\n"
                             f"{studies.read_study_log(study_id, home)}") from None


def interval(job_id, home):
    r = jobs.get_job(job_id, home)
    return datetime.fromisoformat(r.started_at).timestamp(), datetime.fromisoformat(r.finished_at).timestamp(), r.pid


def test_a_sweeps_runs_spread_over_two_worker_slots_and_the_study_holds_none(home, npz):
    study_id = studies.submit_study(sweep(npz), home)
    first = studies.get_study(study_id, home, move_on=False)
    assert [e["key"] for e in first["runs"]] == ["baseline"]  # the levels wait for the baseline
    assert first["progress"] == {"done": 0, "planned": 4, "active": 1}
    worker = start_worker(home, workers=2, **fake_worker_env())
    try:
        done = wait_study(study_id, home)
    finally:
        stop_worker(worker)
    levels = [e["run"] for e in done["runs"] if e["key"] != "baseline"]
    assert len(levels) == 3 and done["progress"]["done"] == 4
    spans = [interval(j, home) for j in levels]
    overlapping = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:] if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, f"no two level runs ran at once: {spans}"
    assert any(a[2] != b[2] for a, b in overlapping), "two runs at once, in two worker processes"
    # the aggregate, from the runs' reports; every run is an ordinary job tagged with the study
    assert [p["level"] for p in done["points"]] == [0.5, 0.8, 0.9]
    assert done["threshold"]["level"] == 0.8  # the fake engine: 0.95 up to 0.8, then 0.85 at 0.9
    for e in done["runs"]:
        assert rec.read_tags(workspace.run_dir(e["run"], home)) == [study_id]
        assert jobs.get_job(e["run"], home).state == "succeeded"


def test_a_lottery_goes_on_after_its_worker_is_killed(home, npz):
    spec = {"kind": "lottery", "name": "lt", "dataset": {"npz": str(npz)},
            "baseline": {"arch": "lenet_300_100", "epochs": 1}, "rounds": 3, "controls": False, "epochs": 1}
    study_id = studies.submit_study(spec, home)
    worker = start_worker(home, workers=1, **fake_worker_env())
    try:
        def ticket_running():
            r = studies.get_study(study_id, home)
            return next((e for e in r["runs"] if e["key"] == "ticket/2" and e["state"] == "running"), None)

        lost = wait_for(ticket_running, 60, "round 2's ticket to run")
    finally:
        stop_worker(worker, signal.SIGKILL)  # the whole worker: consumer and job process
    wait_for(lambda: jobs.get_job(lost["run"], home).state == "failed", 30, "the lost run to be failed")
    stuck = studies.get_study(study_id, home)
    assert stuck["state"] == "running", "a lost run is started again, not the end of the study"
    again = next(e for e in stuck["runs"] if e["key"] == "ticket/2")
    assert again["run"] != lost["run"] and again["state"] == "queued" and stuck["retries"] == {"ticket/2": 2}
    worker = start_worker(home, workers=1, **fake_worker_env())
    try:
        done = wait_study(study_id, home)
    finally:
        stop_worker(worker)
    assert [r["round"] for r in done["rounds"]] == [0, 1, 2, 3]
    assert [r["remaining"] for r in done["rounds"]][1:] == [0.8, 0.8, 0.8]  # the fake engine's sparsity: the rate
    assert "lost its worker" in studies.read_study_log(study_id, home)


def test_cancelling_a_study_cancels_its_queued_and_running_runs(home, npz):
    spec = {"kind": "forgetting", "name": "f", "dataset": {"npz": str(npz)},
            "baseline": {"arch": "lenet_300_100", "epochs": 40}, "seeds": 2, "levels": [0.5]}
    study_id = studies.submit_study(spec, home)
    worker = start_worker(home, workers=1, **fake_worker_env())
    try:
        def one_running():
            r = studies.get_study(study_id, home)
            states = sorted(e["state"] for e in r["runs"])
            return r if states == ["queued", "running"] else None

        running = wait_for(one_running, 60, "one baseline running, one queued")
        out = subprocess.run([sys.executable, "-m", "compression", "cancel", study_id[-6:], "--home", str(home)],
                             capture_output=True, text=True, env=worker_env(home), timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"{study_id}: cancelled" in out.stdout
        for e in running["runs"]:
            wait_for(lambda: jobs.get_job(e["run"], home).state == "cancelled", 30, f"run {e['key']} cancelled")
    finally:
        stop_worker(worker)
    after = studies.get_study(study_id, home)
    assert after["state"] == "cancelled" and "cancelled by user" in after["message"]
    assert {e["state"] for e in after["runs"]} == {"cancelled"}


def test_identical_runs_are_shared_between_studies_and_kept_for_the_other(home, npz):
    one = studies.submit_study(sweep(npz, "one", levels=(0.5, 0.8)), home)
    worker = start_worker(home, workers=2, **fake_worker_env())
    try:
        a = wait_study(one, home)
        two = studies.submit_study(sweep(npz, "two", levels=(0.8, 0.9)), home)
        b = wait_study(two, home)
    finally:
        stop_worker(worker)
    runs_a = {e["key"]: e["run"] for e in a["runs"]}
    runs_b = {e["key"]: e for e in b["runs"]}
    assert runs_b["baseline"]["run"] == runs_a["baseline"] and runs_b["baseline"]["reused"]
    assert runs_b["level-0.8"]["run"] == runs_a["level-0.8"] and runs_b["level-0.8"]["reused"]
    assert not runs_b["level-0.9"]["reused"]
    assert len(jobs.list_jobs(home)) == 4  # baseline, 0.5, 0.8, 0.9: nothing ran twice
    assert rec.read_tags(workspace.run_dir(runs_a["baseline"], home)) == sorted([one, two])


def test_the_command_line_submits_lists_shows_and_refuses_studies(home, npz, tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "compression", *args, "--home", str(home)], capture_output=True,
                              text=True, env=worker_env(home), cwd=ROOT, timeout=120)

    bad = write_json(tmp_path / "bad.json", dict(sweep(npz), levels=[0.5, 1.5]))
    out = cli("submit", str(bad))
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert out.stderr.startswith("error: levels[1]: prune refuses it: step.final_sparsity: 1.5 is outside [0, 1)")
    assert not (home / "studies").exists() or not list((home / "studies").iterdir())
    good = write_json(tmp_path / "good.json", dict(sweep(npz, "cli\x1b[31m"), levels=[0.5]))
    out = cli("submit", str(good))
    assert out.returncode == 2 and "name: must be printable text" in out.stderr
    good = write_json(tmp_path / "good.json", dict(sweep(npz, "cli"), levels=[0.5]))
    out = cli("submit", str(good))
    assert out.returncode == 0, out.stderr
    study_id = out.stdout.strip()
    assert rec.is_study_id(study_id) and "2 runs" in out.stderr
    listing = cli("jobs")
    assert listing.returncode == 0 and study_id in listing.stdout and "sweep 0/2 " in listing.stdout
    status = json.loads(cli("status", study_id).stdout)
    assert status["kind"] == "sweep" and status["runs"][0]["key"] == "baseline"
    assert "submitted sweep study" in cli("logs", study_id).stdout
    only = json.loads(cli("jobs", "--json", "--study", study_id).stdout)
    assert [r["id"] for r in only] == [status["runs"][0]["run"]]
    assert cli("status", "s-nothing").returncode == 2


def test_a_studys_runs_time_latency_at_once_and_other_jobs_wait_for_a_quiet_machine(home, npz, monkeypatch):
    from compression.jobs import execute

    from jobhelpers import tiny_recipe

    monkeypatch.setenv("COMPRESSION_LATENCY_WAIT_S", "300")
    seen = {}

    def runner(recipe, folder, progress):
        seen[recipe.name] = os.environ.get("COMPRESSION_LATENCY_WAIT_S")
        return {}

    tagged = jobs.submit(tiny_recipe(npz, "of a study"), home, studies=["s-20260101-000000-abcdef"])
    plain = jobs.submit(tiny_recipe(npz, "alone"), home)
    for job_id in (tagged, plain):
        assert execute.execute_job(job_id, home, runner=runner, capture_output=False) == "succeeded"
    assert seen == {"of a study": "0", "alone": "300"}
    assert os.environ["COMPRESSION_LATENCY_WAIT_S"] == "300"
    assert rec.read_tags(workspace.run_dir(tagged, home)) == ["s-20260101-000000-abcdef"]
