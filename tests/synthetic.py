"""A synthetic workspace that follows docs/ARCHITECTURE.md exactly, without TensorFlow.

``make_workspace(home)`` writes run folders (recipe.json, status.json, progress.json,
log.txt, report.json, weights.json, predictions.npz and placeholder model files) for a
succeeded baseline, a succeeded prune -> cluster -> QAT run, a failed run and a running
one. The dashboard tests render every page against it in well under a second each.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

CLASS_NAMES = [str(i) for i in range(10)]
LAYERS = [("dense", "Dense", (64, 256)), ("dense_1", "Dense", (256, 128)), ("dense_2", "Dense", (128, 10))]
N_TEST = 360


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def hist_entry(name: str, kernel: np.ndarray) -> dict:
    """One layer of weights.json: 60 bins of the nonzero weights, zeros, distinct values if <= 64."""
    flat = np.asarray(kernel, dtype=np.float32).ravel()
    nz = flat[flat != 0]
    lo, hi = (float(nz.min()), float(nz.max())) if nz.size else (0.0, 0.0)
    if hi <= lo:
        hi = lo + 1e-6
    counts, edges = np.histogram(nz, bins=60, range=(lo, hi))
    values, vcounts = np.unique(flat, return_counts=True)
    small = values.size <= 64
    return {
        "name": name, "bin_edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
        "zeros": int(flat.size - nz.size), "total": int(flat.size),
        "min": float(flat.min()), "max": float(flat.max()),
        "values": [float(v) for v in values] if small else None,
        "value_counts": [int(c) for c in vcounts] if small else None,
    }


def _metrics(kernels: dict[str, np.ndarray], accuracy: float, recall, sizes, latency, keras_zip=True) -> dict:
    layers = []
    total = nonzero = 0
    for name, _type, shape in LAYERS:
        k = kernels[name]
        params = k.size + shape[1]
        nz = int(np.count_nonzero(k)) + shape[1]
        layers.append({"name": name, "params": int(params), "nonzero": nz,
                       "sparsity": float(1 - np.count_nonzero(k) / k.size),
                       "unique_values": int(np.unique(k).size)})
        total += params
        nonzero += nz
    m = {"accuracy": accuracy, "params_total": int(total), "params_nonzero": int(nonzero),
         "sparsity": float(1 - nonzero / total), "layers": layers,
         "keras_zip_bytes": sizes[0], "tflite_bytes": sizes[1], "tflite_zip_bytes": sizes[2],
         "latency_ms": latency, "per_class_recall": [float(r) for r in recall]}
    if not keras_zip:
        m.pop("keras_zip_bytes")
    return m


def _recall(y_true, y_pred):
    return [float(np.mean(y_pred[y_true == c] == c)) if np.any(y_true == c) else 0.0 for c in range(10)]


def _digits_images(n: int, seed: int = 0) -> np.ndarray:
    try:
        from sklearn.datasets import load_digits

        imgs = load_digits().images[:n]
        return (imgs / 16.0 * 255).astype(np.uint8)
    except Exception:
        return np.random.default_rng(seed).integers(0, 255, size=(n, 8, 8), dtype=np.uint8)


def write_job(run_dir: Path, job_id: str, recipe: dict, state: str, *, progress=1.0, stage=None,
              epoch=None, epochs=None, message="", error=None, started=None, finished=None) -> dict:
    now = datetime.now(timezone.utc)
    created = now - timedelta(minutes=5)
    record = {
        "id": job_id, "name": recipe["name"], "kind": "compress" if recipe["steps"] else "baseline",
        "recipe": recipe, "state": state, "progress": progress, "stage": stage, "epoch": epoch,
        "epochs": epochs, "message": message, "created_at": _iso(created),
        "started_at": _iso(started if started is not None else (None if state == "queued" else created + timedelta(seconds=2))),
        "finished_at": _iso(finished if finished is not None else
                            (created + timedelta(seconds=64) if state in ("succeeded", "failed", "cancelled") else None)),
        "error": error, "run_dir": str(run_dir.resolve()),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.json").write_text(json.dumps(recipe, indent=2))
    (run_dir / "status.json").write_text(json.dumps(record, indent=2))
    return record


def baseline_recipe(name="digits-baseline", arch="dense_redundant") -> dict:
    from compression.recipe import Recipe

    return Recipe.from_dict({"name": name, "dataset": "digits", "max_train_samples": 300,
                             "baseline": {"arch": arch, "epochs": 1, "batch_size": 32, "seed": 0},
                             "steps": []}).to_dict()


def compress_recipe(baseline_path: str, name="prune-cluster-qat") -> dict:
    from compression.recipe import Recipe

    return Recipe.from_dict({
        "name": name, "dataset": "digits", "max_train_samples": 300, "baseline": {"path": baseline_path},
        "steps": [{"method": "prune", "initial_sparsity": 0.5, "final_sparsity": 0.9, "epochs": 1},
                  {"method": "cluster", "number_of_clusters": 16, "epochs": 1},
                  {"method": "quantize", "epochs": 1}],
        "export": "int8_dynamic"}).to_dict()


def _write_result(run_dir: Path, recipe: dict, stages: list[tuple[str, str, dict]], seed: int) -> dict:
    """stages: (method, variant, kernels) after the baseline; the last kernels are also the final ones."""
    rng = np.random.default_rng(seed)
    base_k = {name: rng.normal(0, 0.08, size=shape).astype(np.float32) for name, _t, shape in LAYERS}
    y_true = np.arange(N_TEST) % 10
    base_pred = y_true.copy()
    wrong = rng.choice(N_TEST, size=12, replace=False)
    base_pred[wrong] = (base_pred[wrong] + 1) % 10
    final_pred = base_pred.copy()
    if stages:
        flip = rng.choice(np.where(y_true == 8)[0], size=9, replace=False)  # class 8 suffers
        final_pred[flip] = 3
        fix = wrong[:3]
        final_pred[fix] = y_true[fix]
    report_stages, weight_stages = [], [{"stage": "baseline", "layers": [hist_entry(n, base_k[n]) for n, _t, _s in LAYERS]}]
    base_metrics = _metrics(base_k, float(np.mean(base_pred == y_true)), _recall(y_true, base_pred),
                            (251_000, 303_000, 262_000), 0.061)
    kernels = base_k
    for i, (method, variant, fn) in enumerate(stages):
        kernels = fn(kernels)
        acc = float(np.mean(base_pred == y_true)) - 0.01 * (i + 1)
        sizes = [(80_000, 303_000, 61_000), (40_000, 303_000, 30_000), (38_000, 83_000, 14_000)][i]
        m = _metrics(kernels, acc, _recall(y_true, base_pred), sizes, [0.060, 0.059, 0.032][i])
        report_stages.append({"method": method, "variant": variant, "wall_s": 3.1 + i, "metrics": m, "warnings": []})
        weight_stages.append({"stage": method, "layers": [hist_entry(n, kernels[n]) for n, _t, _s in LAYERS]})
    if stages:
        final_k = {n: np.round(k * 127 / 0.3) * 0.3 / 127 for n, k in kernels.items()}
        final = _metrics(final_k, float(np.mean(final_pred == y_true)), _recall(y_true, final_pred),
                         (0, 82_000, 13_500), 0.029, keras_zip=False)
    else:
        final_k = base_k
        final = _metrics(base_k, base_metrics["accuracy"], base_metrics["per_class_recall"],
                         (0, 80_000, 70_000), 0.03, keras_zip=False)
    final["export"] = recipe["export"]
    if stages:  # the Deep Compression container's bit accounting, as the dc exporter writes it
        final["dc_bytes"] = 9_000
        final["dc"] = {"dc_bytes": 9_000, "tflite_bytes": 82_000, "graph_bytes": 2_100, "graph_raw_bytes": 6_000,
                       "graph_codec": "lzma", "tensors": [
                           {"tensor": f"sequential/{n}/MatMul", "layer": n, "encoding": "sparse",
                            "weights": s[0] * s[1], "kept_pct": 10.0, "weight_bits": 4.0, "index_bits": 4.5,
                            "index_bytes": 1_000 + 100 * j, "weight_bytes": 900 + 50 * j, "codebook_bytes": 60,
                            "bytes": 1_960 + 150 * j, "raw_bytes": s[0] * s[1], "ratio": s[0] * s[1] / (1_960 + 150 * j)}
                           for j, (n, _t, s) in enumerate(LAYERS)]}
    weight_stages.append({"stage": "final", "layers": [hist_entry(n, final_k[n]) for n, _t, _s in LAYERS]})
    architecture = [{"name": "flatten", "type": "Flatten", "output_shape": [None, 64], "params": 0}] + [
        {"name": n, "type": t, "output_shape": [None, s[1]], "params": s[0] * s[1] + s[1]} for n, t, s in LAYERS]
    report = {
        "recipe": recipe,
        "dataset": {"name": "digits", "num_classes": 10, "input_shape": [8, 8, 1], "n_train": 300, "n_val": 60,
                    "n_test": N_TEST, "class_names": CLASS_NAMES},
        "baseline": {"metrics": base_metrics, "architecture": architecture, "wall_s": 2.5,
                     "source": "trained" if "arch" in recipe["baseline"] else "loaded"},
        "stages": report_stages, "final": final, "undone": [],
        "artifacts": {"tflite": "model.tflite", "keras": "model.keras", "baseline": "baseline.keras",
                      "weights": "weights.json", "predictions": "predictions.npz", "recipe": "recipe.json"},
        "timing": {"total_s": 61.5}, "versions": {"tensorflow": "2.21.0", "tfmot": "0.8.1"},
    }
    changed = np.where(base_pred != final_pred)[0][:64]
    np.savez(run_dir / "predictions.npz", y_true=y_true, baseline_pred=base_pred, final_pred=final_pred,
             changed_index=changed, changed_images=_digits_images(N_TEST)[changed],
             class_names=np.array(CLASS_NAMES))
    (run_dir / "weights.json").write_text(json.dumps({"stages": weight_stages}))
    (run_dir / "model.tflite").write_bytes(b"TFL3" + bytes(64))
    (run_dir / "model.keras").write_bytes(b"PK" + bytes(32))
    (run_dir / "baseline.keras").write_bytes(b"PK" + bytes(32))
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _prune(k):
    out = {}
    for n, w in k.items():
        thr = np.quantile(np.abs(w), 0.9)
        out[n] = np.where(np.abs(w) >= thr, w, 0).astype(np.float32)
    return out


def _cluster(k):
    out = {}
    for n, w in k.items():
        nz = w[w != 0]
        cents = np.linspace(nz.min(), nz.max(), 15)
        idx = np.abs(nz[:, None] - cents[None, :]).argmin(1)
        c = w.copy()
        c[w != 0] = cents[idx]
        out[n] = c.astype(np.float32)
    return out


def _qat(k):
    return {n: w.copy() for n, w in k.items()}


def make_workspace(home: Path) -> dict[str, dict]:
    """Write four runs under ``home/runs``; returns their job records by role."""
    runs = Path(home) / "runs"
    jobs = {}
    now = datetime.now(timezone.utc)
    b_dir = runs / "20260101-000000-0000b1"
    b_recipe = baseline_recipe()
    jobs["baseline"] = write_job(b_dir, b_dir.name, b_recipe, "succeeded", stage="export", message="done")
    _write_result(b_dir, b_recipe, [], seed=0)
    (b_dir / "log.txt").write_text("baseline: trained 1 epoch\n")

    c_dir = runs / "20260101-000100-0000c2"
    c_recipe = compress_recipe(str((b_dir / "baseline.keras").resolve()))
    jobs["compress"] = write_job(c_dir, c_dir.name, c_recipe, "succeeded", stage="export", message="done")
    _write_result(c_dir, c_recipe, [("prune", "prune", _prune), ("cluster", "sparsity_preserving_cluster", _cluster),
                                     ("quantize", "pcqat", _qat)], seed=0)
    (c_dir / "log.txt").write_text("prune\ncluster\nquantize\nexport\n")

    p_dir = runs / "20260101-000200-0000d3"
    p_recipe = compress_recipe(str((b_dir / "baseline.keras").resolve()), name="prune-only")
    p_recipe["steps"] = p_recipe["steps"][:1]
    jobs["prune"] = write_job(p_dir, p_dir.name, p_recipe, "succeeded", stage="export", message="done")
    _write_result(p_dir, p_recipe, [("prune", "prune", _prune)], seed=1)

    f_dir = runs / "20260101-000300-0000e4"
    jobs["failed"] = write_job(f_dir, f_dir.name, dict(c_recipe, name="broken-model"), "failed", progress=0.1,
                               stage="baseline", error="baseline.path: broken.keras is not a Keras model file")
    (f_dir / "log.txt").write_text("Traceback (most recent call last):\n  ...\nModelLoadError: broken.keras is not a Keras model file\n")

    r_dir = runs / "20260101-000400-0000f5"
    jobs["running"] = write_job(r_dir, r_dir.name, dict(c_recipe, name="still-running"), "running", progress=0.42,
                                stage="prune", epoch=1, epochs=2, message="prune: epoch 1/2",
                                started=now - timedelta(seconds=30))
    status = json.loads((r_dir / "status.json").read_text())
    status.update(host="synthetic-worker-host", heartbeat_at=_iso(now), phase="train", stage_index=1, stage_count=4)
    (r_dir / "status.json").write_text(json.dumps(status, indent=2))
    jobs["running"] = dict(jobs["running"], **status)
    (r_dir / "progress.json").write_text(json.dumps({"phase": "train", "stage": "prune", "stage_index": 1,
                                                     "stage_count": 4, "epoch": 1, "epochs": 2, "fraction": 0.42,
                                                     "message": "prune: epoch 1/2"}))
    return jobs


def add_collapsed_run(home: Path, name: str = "collapsed-demo") -> dict:
    """A succeeded compress run as issue 9 found it: a weak baseline (29.5%) on 600 samples and an
    exported file at 8.9% that predicts one class, its pruning mask having jumped in one update."""
    runs = Path(home) / "runs"
    d = runs / "20260101-000500-0000a6"
    recipe = compress_recipe(str(d / "baseline.keras"), name=name)
    recipe["max_train_samples"] = 600
    recipe["baseline"] = {"arch": "dense_redundant", "epochs": 2, "batch_size": 128, "seed": 0, "learning_rate": 0.001}
    job = write_job(d, d.name, recipe, "succeeded", stage="export", message="done")
    report = _write_result(d, recipe, [("prune", "prune", _prune), ("cluster", "sparsity_preserving_cluster", _cluster),
                                       ("quantize", "pcqat", _qat)], seed=3)
    report["baseline"]["metrics"]["accuracy"] = 0.295
    for st in report["stages"]:
        st["metrics"]["accuracy"] = 0.12
    report["stages"][0]["warnings"] = ["trains 10 steps but updates the mask every 100: sparsity jumps to 90% in one go"]
    report["final"]["accuracy"] = 0.089
    report["final"]["per_class_recall"] = [1.0] + [0.0] * 9
    report["dataset"]["n_train"] = 1294
    (d / "report.json").write_text(json.dumps(report, indent=2))
    return job


def add_big_run(home: Path, n_layers: int = 40, width: int = 300, name: str = "big-model") -> dict:
    """A succeeded run standing for a >= 3 M-weight model: many layers, 60 bins per layer per stage."""
    global LAYERS
    saved = LAYERS
    try:
        LAYERS = [(f"dense_{i}", "Dense", (width, width)) for i in range(n_layers - 1)] + [("output", "Dense", (width, 10))]
        d = Path(home) / "runs" / "20260101-000600-0000b7"
        recipe = compress_recipe(str(d / "baseline.keras"), name=name)
        job = write_job(d, d.name, recipe, "succeeded", stage="export", message="done")
        _write_result(d, recipe, [("prune", "prune", _prune), ("cluster", "sparsity_preserving_cluster", _cluster),
                                  ("quantize", "pcqat", _qat)], seed=5)
        return job
    finally:
        LAYERS = saved


def add_many_runs(home: Path, n: int) -> list[dict]:
    """n more succeeded runs (copies of a prune-only run under new ids and names) for page-speed benchmarks."""
    import shutil

    runs = Path(home) / "runs"
    src = runs / "20260101-000200-0000d3"
    out = []
    for i in range(n):
        job_id = f"20260102-{i // 3600:02d}{(i // 60) % 60:02d}{i % 60:02d}-{i:06x}"
        d = runs / job_id
        shutil.copytree(src, d)
        status = json.loads((d / "status.json").read_text())
        status.update(id=job_id, name=f"sweep run {i:02d} with a rather long descriptive name", run_dir=str(d.resolve()))
        status["recipe"] = dict(status["recipe"], name=status["name"])
        (d / "status.json").write_text(json.dumps(status, indent=2))
        (d / "recipe.json").write_text(json.dumps(status["recipe"], indent=2))
        out.append(status)
    return out
