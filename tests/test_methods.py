"""The method protocol: every registered method keeps its contract; each reaches what was asked,
touches only the chosen layers, keeps what earlier steps made, and leaves its input intact."""

import numpy as np
import pytest

from compression.engine import methods as executors
from compression.engine import metrics, models
from compression.engine.methods.base import MethodContext, StepResult
from compression.engine.quantnoise import blocks_of
from compression.errors import RecipeError
from compression.inputs import data
from compression.recipe import Recipe, methods
from independent import litert_kernels


@pytest.fixture(scope="module")
def ds(tiny_npz):
    return data.load_npz(tiny_npz)


@pytest.fixture(scope="module")
def baseline(ds):
    return models.train_baseline("lenet_300_100", ds, epochs=3, batch_size=32, seed=0)


@pytest.fixture(scope="module")
def pruned_80(ds, baseline):
    return run("prune", baseline, ds, final_sparsity=0.8, epochs=1, batch_size=32).model


def kernels(model):
    return {lw.name: lw.kernel for lw in metrics.keras_weights(model)}


def sparsity_of(kernel):
    return 1 - np.count_nonzero(kernel) / kernel.size


def step(name, **kw):
    """A step as a recipe would parse it."""
    return methods.step_type(name).from_dict({"method": name, **kw}, "steps[0]")


def run(name, model, ds, variant=None, **kw) -> StepResult:
    method = methods.get(name)
    s = step(name, **kw)
    ctx = MethodContext(baseline=model, initial_weights=None, earlier=[],
                        variant=variant or method.variant(s, frozenset()), where="steps[0]")
    return executors.get(name).apply(model, ds, s, ctx)


def int8_kernels_in_its_file(model) -> bool:
    """Read by LiteRT (not by the studio): every kernel of the model's int8 file is stored as int8."""
    from compression.engine import export

    found = litert_kernels(export.to_tflite(model, "int8_dynamic"))
    return bool(found) and all(k["dtype"] == np.int8 for k in found)


# --- the contract, for every registered method ------------------------------------------------

# What each method must reach on the tiny model, with a cheap fine-tuning.
TARGETS = {
    "prune": ({"final_sparsity": 0.7, "epochs": 1, "batch_size": 32},
              lambda m: all(sparsity_of(k) == pytest.approx(0.7, abs=0.01) for k in kernels(m).values())),
    "cluster": ({"number_of_clusters": 8, "epochs": 1, "batch_size": 32},
                lambda m: all(np.unique(k).size <= 8 for k in kernels(m).values())),
    "quantize": ({"epochs": 1, "batch_size": 64}, int8_kernels_in_its_file),
    # 16 codewords of 4 weights: every block of every kernel is one of at most 16
    "pq": ({"block_size": 4, "codebook_size": 16, "pretrain_epochs": 0, "epochs": 1, "batch_size": 64,
            "kmeans_iterations": 5},
           lambda m: all(np.unique(blocks_of(k, 4), axis=0).shape[0] <= 16 for k in kernels(m).values())),
    # a lottery round prunes half the survivors (a quarter in the output layer); reinit needs no initial weights
    "lottery": ({"control": "reinit", "rate": 0.5, "epochs": 1, "batch_size": 32},
                lambda m: [round(sparsity_of(k), 2) for k in kernels(m).values()] == [0.5, 0.5, 0.25]),
}


def test_every_registered_method_has_a_contract_here():
    assert set(methods.names()) == set(TARGETS), "a new method needs its target in TARGETS"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_each_method_reaches_its_target_and_leaves_its_input_intact(name, ds, baseline):
    before = [w.copy() for w in baseline.get_weights()]
    kw, reached = TARGETS[name]
    result = run(name, baseline, ds, **kw)
    assert isinstance(result, StepResult) and reached(result.model)
    assert result.stats, "stats hold target vs achieved"
    for a, b in zip(before, baseline.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_each_method_declares_every_parameter_and_refuses_bad_values_in_one_line(name):
    method = methods.get(name)
    described = method.describe_params()
    assert described["help"] and described["title"] and described["variants"]
    for pname, p in described["params"].items():
        assert p["help"], f"{name}.{pname} has no help"
        assert "default" in p
        bad = {"float": 7.5, "int": -3, "bool": "yes", "enum": "nonsense", "layers": 3,
               "per_layer_float": {"fc1": "x"}, "per_layer_int": 1.5, "pair": [1]}[p["kind"]]
        if p["kind"] == "float" and p.get("max", 10) >= 7.5:
            bad = -1.0
        with pytest.raises(RecipeError) as info:
            step(name, **{pname: bad})
        text = str(info.value)
        assert "\n" not in text and text.startswith(f"steps[0].{pname}"), text
    with pytest.raises(RecipeError, match="unknown field"):
        step(name, not_a_parameter=1)


def test_methods_kept_what_earlier_steps_made_when_ordered_safely(ds, pruned_80):
    method = methods.get("cluster")
    s = step("cluster", number_of_clusters=8, epochs=1, batch_size=32)
    assert method.variant(s, frozenset({"sparsity"})) == "sparsity_preserving_cluster"
    kept = run("cluster", pruned_80, ds, variant="sparsity_preserving_cluster", number_of_clusters=8, epochs=1,
               batch_size=32).model
    for name, k in kernels(kept).items():
        assert sparsity_of(k) == pytest.approx(0.8, abs=0.01), name
        assert np.unique(k).size <= 9  # 8 centroids and the pruned zeros
    # Plain clustering moves the zeros to the nearest centroid: that is what preserving prevents.
    lost = run("cluster", pruned_80, ds, variant="cluster", number_of_clusters=8, epochs=1, batch_size=32).model
    assert sparsity_of(kernels(lost)["fc1"]) < 0.5


# --- pruning ------------------------------------------------------------------------------------


def test_constant_sparsity_reaches_its_target_and_reports_it(ds, baseline):
    result = run("prune", baseline, ds, schedule="constant_sparsity", target_sparsity=0.6, epochs=1, batch_size=32)
    for name, k in kernels(result.model).items():
        assert sparsity_of(k) == pytest.approx(0.6, abs=0.01), name
    stat = result.stats["target_sparsity"]
    assert stat["target"] == 0.6 and stat["achieved"] == pytest.approx(0.6, abs=0.01)


def test_short_fine_tuning_still_reaches_the_target_and_says_why(ds, baseline):
    # 270 samples / 32 = 9 steps per epoch: frequency 100 would never update the mask.
    result = run("prune", baseline, ds, final_sparsity=0.7, frequency=100, epochs=1, batch_size=32)
    assert any("frequency lowered from 100" in n for n in result.notes)
    assert all(sparsity_of(k) == pytest.approx(0.7, abs=0.01) for k in kernels(result.model).values())


def test_per_layer_sparsity_follows_the_map_and_the_default_elsewhere(ds, baseline):
    result = run("prune", baseline, ds, final_sparsity={"fc1": 0.9, "output": 0.5}, epochs=1, batch_size=32)
    ks = kernels(result.model)
    assert sparsity_of(ks["fc1"]) == pytest.approx(0.9, abs=0.01)
    assert sparsity_of(ks["output"]) == pytest.approx(0.5, abs=0.01)
    assert sparsity_of(ks["fc2"]) == pytest.approx(0.8, abs=0.01)  # the declared default
    per_layer = result.stats["final_sparsity"]["per_layer"]
    assert per_layer["fc1"]["target"] == 0.9 and per_layer["fc1"]["achieved"] == pytest.approx(0.9, abs=0.01)


def test_a_per_layer_map_naming_an_unknown_layer_lists_the_models_layers(ds, baseline):
    with pytest.raises(RecipeError, match=r"steps\[0\]\.final_sparsity\.fc9: no layer with weights named 'fc9'; "
                                          "the model's layers with weights: fc1, fc2, output"):
        run("prune", baseline, ds, final_sparsity={"fc9": 0.9}, epochs=1)


def test_m_by_n_pruning_zeroes_m_of_every_n(ds, baseline):
    pruned = run("prune", baseline, ds, sparsity_m_by_n=[2, 4], epochs=1, batch_size=32).model
    k = kernels(pruned)["fc2"]  # (300, 100): blocks of 4 along the input axis
    blocks = (k.T.reshape(k.shape[1], -1, 4) != 0).sum(axis=-1)
    assert blocks.max() <= 2
    assert sparsity_of(k) == pytest.approx(0.5, abs=0.01)


def test_pruning_only_the_chosen_layers(ds, baseline):
    ks = kernels(run("prune", baseline, ds, final_sparsity=0.8, epochs=1, layers={"names": ["fc2"]}).model)
    assert sparsity_of(ks["fc2"]) == pytest.approx(0.8, abs=0.01)
    assert sparsity_of(ks["fc1"]) < 0.05 and sparsity_of(ks["output"]) < 0.05


def test_an_unknown_layer_name_is_a_clear_error(ds, baseline):
    with pytest.raises(RecipeError, match="no layer with weights named 'fc9'; there are: fc1, fc2, output"):
        run("prune", baseline, ds, layers={"names": ["fc9"]})


# --- clustering ----------------------------------------------------------------------------------


@pytest.mark.parametrize("init", ["linear", "density_based"])
def test_clustering_leaves_at_most_n_values_per_kernel(ds, baseline, init):
    result = run("cluster", baseline, ds, number_of_clusters=8, cluster_centroids_init=init, epochs=1, batch_size=32)
    for name, k in kernels(result.model).items():
        assert np.unique(k).size <= 8, name
    assert result.stats["number_of_clusters"]["achieved"] <= 8
    assert np.unique(kernels(baseline)["fc1"]).size > 1000  # the input is untouched


def test_per_layer_clusters_and_type_selection(ds, baseline):
    result = run("cluster", baseline, ds, number_of_clusters={"fc1": 4}, layers={"types": ["Dense"]}, epochs=1,
                 batch_size=32)
    ks = kernels(result.model)
    assert np.unique(ks["fc1"]).size <= 4 and 4 < np.unique(ks["fc2"]).size <= 16
    with pytest.raises(RecipeError, match="no layer of type Conv2D"):
        run("cluster", baseline, ds, layers={"types": ["Conv2D"]})


# --- one function decides what a pruning schedule becomes, for the engine and the page --------


def test_the_page_warns_with_the_very_notes_the_engine_will_act_on():
    from compression.recipe.methods.prune import schedule_plan
    from compression.studio.schedules import schedule_warnings

    recipe = Recipe.from_dict({"dataset": "digits", "baseline": {"arch": "lenet_300_100"},
                               "steps": [{"method": "prune", "final_sparsity": 0.9, "frequency": 100, "epochs": 1}]})
    plan = schedule_plan(recipe.steps[0], 12)  # 12 optimizer steps: frequency 100 cannot work
    assert plan.frequency == 3 and plan.end_step == 12 and plan.notes
    warnings = schedule_warnings(recipe, lambda batch_size: 12)
    assert len(warnings) == len(plan.notes) and all(n in w for n, w in zip(plan.notes, warnings))
    assert schedule_warnings(recipe, lambda batch_size: 10_000) == []  # enough steps: nothing to change


def test_latency_waits_while_a_job_trains_and_says_when_it_could_not(monkeypatch, tmp_path):
    import threading

    monkeypatch.setenv("COMPRESSION_ACTIVITY_LOCK", str(tmp_path / "activity.lock"))  # no other test's training
    from compression.engine import export

    model = models.build("dense_redundant", (8, 8), 10, seed=0)
    tfl = export.to_tflite(model, "float32")
    sample = np.zeros((8, 8), np.float32)
    monkeypatch.setenv("COMPRESSION_LATENCY_WAIT_S", "60")
    release = threading.Event()
    training = threading.Event()

    def trainer():
        with metrics.training_activity():
            training.set()
            release.wait(30)

    t = threading.Thread(target=trainer)
    t.start()
    assert training.wait(10)
    result, done = {}, threading.Event()
    timer = threading.Thread(target=lambda: (result.update(metrics.latency(tfl, sample, runs=2)), done.set()))
    try:
        timer.start()
        assert not done.wait(1.0), "latency was timed while another job was training"
    finally:
        release.set()
    assert done.wait(30) and result["latency_quiet"] is True
    t.join()
    timer.join()
    # a machine that never gets quiet: timed anyway after the wait, and flagged
    monkeypatch.setenv("COMPRESSION_LATENCY_WAIT_S", "0.3")
    with metrics.training_activity():
        flagged = metrics.latency(tfl, sample, runs=3)
    assert flagged["latency_quiet"] is False and flagged["latency_ms"] > 0 and flagged["latency_spread_ms"] >= 0


# --- shared fine-tuning options: every method gets them through ctx.fit ---------------------------


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_method_distils_from_the_baseline_when_asked(name, ds, baseline):
    kw, reached = TARGETS[name]
    method = methods.get(name)
    s = step(name, **kw, distill_alpha=0.5, distill_temperature=3)
    ctx = MethodContext(baseline=baseline, initial_weights=None, earlier=[],
                        variant=method.variant(s, frozenset()), where="steps[0]")
    result = executors.get(name).apply(baseline, ds, s, ctx)
    assert reached(result.model)
    assert ctx.notes == ["distilled from the float baseline (weight 0.5, temperature 3)"]


def test_iterative_pruning_runs_its_cycles_in_tensorflow_as_declared(ds, baseline):
    import tensorflow_model_optimization as tfmot

    from compression.engine.methods.prune import cycles_schedule
    from compression.recipe.methods.prune import cycle_targets, cycles_sparsity, schedule_plan

    s = step("prune", initial_sparsity=0.0, final_sparsity=0.9, cycles=3, frequency=5, epochs=4, batch_size=32)
    plan = schedule_plan(s, 9)  # 270 samples / 32
    assert (plan.cycles, plan.cycle_steps, plan.end_step, plan.frequency) == (3, 11, 33, 2)
    assert any("each of the 3 cycles" in n for n in plan.notes)  # two mask updates per rise: frequency lowered
    assert cycle_targets(0.0, 0.9, 3)[-1] == pytest.approx(0.9)
    # kept shares fall by the same ratio each cycle: 1, 0.464, 0.215, 0.1
    kept = [1 - t for t in cycle_targets(0.0, 0.9, 3)]
    assert kept[0] / 1.0 == pytest.approx(kept[1] / kept[0]) == pytest.approx(kept[2] / kept[1])
    tf_schedule = cycles_schedule(tfmot.sparsity.keras, plan, 0.0, 0.9)
    for t in range(plan.total_steps + 1):
        should, value = tf_schedule(np.int64(t))
        assert float(value) == pytest.approx(cycles_sparsity(t, plan, 0.0, 0.9), abs=1e-6)
        assert bool(should) == (plan.begin_step <= t <= plan.end_step and t % plan.frequency == 0)
    result = run("prune", baseline, ds, initial_sparsity=0.0, final_sparsity=0.9, cycles=3, epochs=4, batch_size=32)
    assert all(sparsity_of(k) == pytest.approx(0.9, abs=0.01) for k in kernels(result.model).values())
    assert methods.get("prune").describe(s, "prune", []) == "Pruning to 90% sparsity in 3 prune-retrain cycles"
    with pytest.raises(RecipeError, match=r"steps\[0\]\.cycles: 20 cycles need at least 80 pruning steps"):
        schedule_plan(step("prune", cycles=20, epochs=1), 9, "steps[0]")


def test_the_distillation_loss_is_cross_entropy_plus_the_softened_kl():
    import tensorflow as tf

    from compression.engine import training

    rng = np.random.default_rng(0)
    student = tf.nn.softmax(rng.normal(size=(6, 4)).astype(np.float32))
    teacher = tf.nn.softmax(rng.normal(size=(6, 4)).astype(np.float32))
    labels = np.array([0, 1, 2, 3, 0, 1], np.float32)
    y = tf.concat([labels[:, None], teacher], axis=1)
    ce = tf.keras.losses.sparse_categorical_crossentropy(labels, student).numpy()
    plain = training.loss_fn(4, False, 0.0, 0.0, 4.0, distilling=True)(y, student).numpy()
    np.testing.assert_allclose(plain, ce, rtol=1e-5)  # alpha 0: only the labels count
    same = training.loss_fn(4, False, 0.0, 1.0, 3.0, distilling=True)(
        tf.concat([labels[:, None], student], axis=1), student).numpy()
    np.testing.assert_allclose(same, 0.0, atol=1e-5)  # a student equal to its teacher has nothing to learn
    t, s_ = np.log(teacher.numpy()) / 2.0, np.log(student.numpy()) / 2.0
    p = np.exp(t) / np.exp(t).sum(1, keepdims=True)
    q = np.exp(s_) / np.exp(s_).sum(1, keepdims=True)
    kl = 4.0 * (p * (np.log(p) - np.log(q))).sum(1)
    mixed = training.loss_fn(4, False, 0.0, 0.3, 2.0, distilling=True)(y, student).numpy()
    np.testing.assert_allclose(mixed, 0.7 * ce + 0.3 * kl, rtol=1e-4)
    smooth = training.loss_fn(4, False, 0.1, 0.0, 4.0, distilling=False)(labels, student).numpy()
    ref = tf.keras.losses.CategoricalCrossentropy(label_smoothing=0.1, reduction="none")(
        tf.one_hot(labels.astype(int), 4), student).numpy()
    np.testing.assert_allclose(smooth, ref, rtol=1e-5)


def test_random_shifts_move_whole_images_and_fill_with_zeros():
    import tensorflow as tf

    from compression.engine import training

    x = np.zeros((64, 8, 8), np.float32)
    x[:, 4, 4] = 1.0
    tf.random.set_seed(0)
    out = training.shift_images(tf.constant(x), 2).numpy()
    ys, xs = np.nonzero(out.sum(axis=0))
    assert out.shape == x.shape and np.all(out.sum(axis=(1, 2)) == 1.0)  # one pixel each, moved not blurred
    assert set(ys) <= {2, 3, 4, 5, 6} and set(xs) <= {2, 3, 4, 5, 6} and len(set(zip(ys, xs))) > 10
    edge = np.ones((4, 8, 8, 1), np.float32)
    moved = training.shift_images(tf.constant(edge), 3).numpy()
    assert moved.min() == 0.0 or np.all(moved == 1.0)  # uncovered borders are zeros, never wrapped pixels


# --- lottery tickets ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_init(ds):
    """A trained baseline whose initial weights are known (as a studio-trained baseline's are)."""
    model = models.build("lenet_300_100", ds.input_shape, ds.num_classes, seed=0)
    initial = [w.copy() for w in model.get_weights()]
    models.fit(model, ds, epochs=3, batch_size=32, learning_rate=1e-3)
    return model, initial


def lottery(model, ds, initial, seed=0, **kw) -> StepResult:
    s = step("lottery", **{"epochs": 1, "batch_size": 32, **kw})
    ctx = MethodContext(baseline=model, initial_weights=initial, earlier=[], variant="lottery", where="steps[0]",
                        seed=seed)
    return executors.get("lottery").apply(model, ds, s, ctx)


def test_a_ticket_prunes_the_smallest_trained_weights_and_rewinds_the_rest_to_their_initial_values(ds, with_init):
    model, initial = with_init
    trained = kernels(model)
    # a learning rate of 1e-9: after training, the weights are still where the rewind put them
    result = lottery(model, ds, initial, rate=0.2, learning_rate=1e-9)
    got = kernels(result.model)
    init = {lw.name: w for lw, w in zip(metrics.keras_weights(model), initial[0::2])}
    for name, k in got.items():
        rate = 0.1 if name == "output" else 0.2
        assert sparsity_of(k) == pytest.approx(rate, abs=0.002), name
        kept = k != 0
        # the pruned ones are the smallest trained magnitudes
        assert np.abs(trained[name][~kept]).max() <= np.abs(trained[name][kept]).min()
        np.testing.assert_allclose(k[kept], init[name][kept], atol=1e-6)
    es = result.stats["early_stop"]
    assert es["iterations"] == 9 and es["iteration"] in [t[0] for t in es["trace"]]
    assert result.stats["sparsity"]["per_layer"]["output"]["rate"] == 0.1


def test_a_second_round_prunes_inside_the_first_rounds_mask(ds, with_init):
    model, initial = with_init
    first = lottery(model, ds, initial, rate=0.5).model
    second = lottery(first, ds, initial, rate=0.5).model
    for name, k in kernels(second).items():
        assert sparsity_of(k) == pytest.approx(0.75 if name != "output" else 1 - 0.75 ** 2, abs=0.003), name
        assert not np.any((k != 0) & (kernels(first)[name] == 0)), "a pruned weight came back"


def test_the_controls_keep_the_tickets_size_with_other_weights_or_another_mask(ds, with_init):
    model, initial = with_init
    ticket = kernels(lottery(model, ds, initial, rate=0.5, learning_rate=1e-9).model)
    reinit = kernels(lottery(model, ds, initial, rate=0.5, learning_rate=1e-9, control="reinit", seed=3).model)
    shuffled = kernels(lottery(model, ds, initial, rate=0.5, learning_rate=1e-9, control="random_mask").model)
    for name in ticket:
        assert np.array_equal(ticket[name] != 0, reinit[name] != 0), "reinit keeps the mask"
        assert not np.allclose(ticket[name], reinit[name]), "with other weights"
        assert np.count_nonzero(shuffled[name]) == np.count_nonzero(ticket[name]), "random mask: same size"
        assert not np.array_equal(shuffled[name] != 0, ticket[name] != 0)


def test_late_rewinding_restarts_from_the_dense_weights_after_k_iterations_and_a_ticket_needs_initial_weights(
        ds, with_init):
    from compression.engine.methods.lottery import LotteryExecutor
    from compression.engine.models import fit, outputs_probabilities

    model, initial = with_init
    s = step("lottery", rewind="iteration", rewind_iteration=5, learning_rate=1e-2, batch_size=32)
    ctx = MethodContext(baseline=model, initial_weights=initial, earlier=[], variant="lottery", where="steps[0]")
    point = LotteryExecutor._late_rewind_point(model, initial, ds, s, ctx, fit, outputs_probabilities)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(point, initial))
    # Adam moves a weight by about the learning rate per step: 5 steps, not an epoch's 9
    assert 0 < moved <= 6 * 1e-2
    assert sparsity_of(kernels(lottery(model, ds, initial, rate=0.2, rewind="iteration",
                                       rewind_iteration=5).model)["fc1"]) == pytest.approx(0.2, abs=0.002)
    with pytest.raises(RecipeError, match=r"steps\[0\]\.rewind: needs the baseline's initial weights"):
        lottery(model, ds, None)
    with pytest.raises(RecipeError, match=r"steps\[0\]\.rewind"):
        step("lottery", control="reinit", rewind="iteration")
