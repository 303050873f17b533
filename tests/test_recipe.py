"""Recipes: validation with clear messages, round trips, and the ordering rules. No TensorFlow."""

import json

import pytest

from compression.recipe.ordering import plan
from compression.recipe import Recipe, RecipeError, training_epochs

BASE = {"dataset": "mnist", "baseline": {"arch": "lenet_300_100"}}


def recipe(steps=(), **kw):
    return Recipe.from_dict({**BASE, "steps": list(steps), **kw})


def error_of(data) -> str:
    with pytest.raises(RecipeError) as info:
        Recipe.from_dict(data)
    return str(info.value)


def test_round_trip_fills_defaults_and_is_stable():
    r = recipe([{"method": "prune", "final_sparsity": 0.9}, {"method": "cluster"}, {"method": "quantize"}])
    d = r.to_dict()
    assert d["steps"][0]["schedule"] == "polynomial_decay"
    assert d["steps"][0]["initial_sparsity"] == 0.5
    assert d["steps"][1]["number_of_clusters"] == 16
    assert d["steps"][2]["batch_size"] == 500
    again = Recipe.from_json(json.dumps(d))
    assert again == r and again.to_dict() == d


def test_issue_example_recipe_is_accepted():
    with open("examples/prune_cluster_qat.json") as f:
        r = Recipe.from_dict(json.load(f))
    assert [p.variant for p in plan(r)] == ["prune", "sparsity_preserving_cluster", "pcqat"]


def test_every_example_recipe_is_valid():
    from pathlib import Path

    names = sorted(p.name for p in Path("examples").glob("*.json"))
    assert len(names) >= 3
    for name in names:
        Recipe.load(Path("examples") / name)


@pytest.mark.parametrize(
    "data, field, words",
    [
        ({**BASE, "steps": [{"method": "distill"}]}, "steps[0].method", "prune, lottery, cluster, quantize"),
        ({**BASE, "steps": [{"method": "prune", "final_sparsity": 1.0}]}, "steps[0].final_sparsity", "[0, 1)"),
        ({**BASE, "steps": [{"method": "prune", "initial_sparsity": -0.1}]}, "steps[0].initial_sparsity", "[0, 1)"),
        ({**BASE, "steps": [{"method": "cluster", "number_of_clusters": 0}]}, "steps[0].number_of_clusters", "2..256"),
        ({"baseline": {"arch": "lenet_5"}}, "dataset", "digits, mnist, fashion_mnist, cifar10"),
        ({"dataset": "imagenet", "baseline": {"arch": "lenet_5"}}, "dataset", "mnist"),
        ({"dataset": "mnist", "baseline": {"arch": "resnet"}}, "baseline.arch", "lenet_300_100"),
        ({"dataset": "mnist", "baseline": {"path": "model.onnx"}}, "baseline.path", ".keras or .h5"),
        ({**BASE, "export": "int4"}, "export", "int8_dynamic"),
        ({**BASE, "steps": [{"method": "prune", "sparsity": 0.5}]}, "steps[0].sparsity", "final_sparsity"),
        ({**BASE, "steps": [{"method": "prune", "sparsity_m_by_n": [4, 2]}]}, "steps[0].sparsity_m_by_n", "0 < M < N"),
        ({**BASE, "steps": [{"method": "prune", "epochs": 0}]}, "steps[0].epochs", "minimum 1"),
        ({**BASE, "steps": [{"method": "cluster", "cluster_centroids_init": "best"}]},
         "steps[0].cluster_centroids_init", "kmeans_plus_plus"),
        ({**BASE, "steps": [{"method": "prune", "layers": {"colors": ["red"]}}]}, "steps[0].layers", "all"),
    ],
)
def test_bad_fields_are_named_with_allowed_values(data, field, words):
    message = error_of(data)
    assert message.startswith(field + ":"), message
    assert words in message
    assert "\n" not in message


def test_polynomial_decay_cannot_lower_sparsity():
    assert "below initial_sparsity" in error_of(
        {**BASE, "steps": [{"method": "prune", "initial_sparsity": 0.8, "final_sparsity": 0.5}]}
    )


def test_quantize_step_needs_an_int8_export():
    message = error_of({**BASE, "steps": [{"method": "quantize"}], "export": "float32"})
    assert message.startswith("export:") and "int8" in message


def test_bad_json_is_one_clear_line():
    with pytest.raises(RecipeError) as info:
        Recipe.from_json("{not json")
    assert "not valid JSON" in str(info.value)


@pytest.mark.parametrize(
    "methods, variants",
    [
        (["prune", "cluster", "quantize"], ["prune", "sparsity_preserving_cluster", "pcqat"]),
        (["prune", "quantize"], ["prune", "pqat"]),
        (["cluster", "quantize"], ["cluster", "cqat"]),
        (["quantize"], ["qat"]),
        (["prune", "cluster"], ["prune", "sparsity_preserving_cluster"]),
    ],
)
def test_each_order_runs_the_preserving_variant(methods, variants):
    r = recipe([{"method": m} for m in methods])
    assert [p.variant for p in plan(r)] == variants


def test_pcqat_description_names_what_it_keeps():
    r = recipe([{"method": "prune", "final_sparsity": 0.9}, {"method": "cluster", "number_of_clusters": 16},
                {"method": "quantize"}])
    assert plan(r)[2].description == "QAT will run as PCQAT: keeps 90% sparsity and 16 clusters"


@pytest.mark.parametrize(
    "methods, lost",
    [
        (["cluster", "prune"], "clusters are lost"),
        (["quantize", "prune"], "quantization ranges"),
        (["quantize", "cluster"], "quantization ranges"),
    ],
)
def test_orders_that_undo_work_are_refused_with_what_is_lost(methods, lost):
    message = error_of({**BASE, "steps": [{"method": m} for m in methods]})
    assert message.startswith("steps[1].method:")
    assert lost in message and "allow_unsafe_order" in message


def test_unsafe_order_runs_when_asked_and_carries_a_warning():
    r = recipe([{"method": "cluster"}, {"method": "prune"}], allow_unsafe_order=True)
    planned = plan(r)
    assert planned[1].warnings and "clusters are lost" in planned[1].warnings[0]


def test_not_preserving_is_refused_unless_asked():
    steps = [{"method": "prune"}, {"method": "cluster", "preserve": False}]
    message = error_of({**BASE, "steps": steps})
    assert message.startswith("steps[1].preserve:") and "sparsity is lost" in message
    r = recipe(steps, allow_unsafe_order=True)
    assert plan(r)[1].variant == "cluster"


def test_a_method_appears_once():
    assert "appears twice" in error_of({**BASE, "steps": [{"method": "prune"}, {"method": "prune"}]})


def test_training_epochs_counts_baseline_and_steps():
    r = recipe([{"method": "prune", "epochs": 2}, {"method": "cluster", "epochs": 1}, {"method": "quantize"}])
    assert training_epochs(r) == 2 + 2 + 1 + 1
    loaded = Recipe.from_dict({"dataset": "mnist", "baseline": {"path": "m.keras"}, "steps": [{"method": "prune"}]})
    assert training_epochs(loaded) == 2


def test_m_by_n_target_is_m_zeros_of_n():
    r = recipe([{"method": "prune", "sparsity_m_by_n": "2:4"}])
    assert r.steps[0].sparsity_m_by_n == (2, 4) and r.steps[0].target == 0.5


def test_an_unknown_method_is_an_error_naming_the_known_ones():
    message = error_of({**BASE, "steps": [{"method": "prune"}, {"method": "distill"}]})
    assert message.startswith("steps[1].method:") and "'distill' is not a method" in message
    assert "prune" in message and "cluster" in message and "quantize" in message


def test_the_planner_refuses_an_unknown_method_instead_of_guessing():
    from dataclasses import replace

    r = recipe([{"method": "prune"}])

    class Odd:  # a step object whose method nobody registered
        method = "mystery"
        preserve = True
        target_text = ""

    with pytest.raises(RecipeError, match="'mystery' is not a method"):
        plan(replace(r, steps=(r.steps[0], Odd())))


@pytest.mark.parametrize("value", [[2.9, 4.2], [True, 4], ["2", 4], [2], "2-4", [4, 2], [0, 4]])
def test_m_by_n_must_be_two_whole_numbers_m_below_n(value):
    message = error_of({**BASE, "steps": [{"method": "prune", "sparsity_m_by_n": value}]})
    assert message.startswith("steps[0].sparsity_m_by_n")


def test_per_layer_targets_take_a_map_and_keep_the_default_elsewhere():
    r = recipe([{"method": "prune", "final_sparsity": {"fc1": 0.92, "fc2": 0.91, "output": 0.74}},
                {"method": "cluster", "number_of_clusters": {"fc1": 32}}])
    prune, cluster = r.steps
    assert prune.target_for("fc1") == 0.92 and prune.target_for("output") == 0.74
    assert prune.target_for("other") == 0.8  # the step's declared default
    assert cluster.clusters_for("fc1") == 32 and cluster.clusters_for("fc2") == 16
    again = Recipe.from_dict(r.to_dict())
    assert again == r and again.to_dict()["steps"][0]["final_sparsity"] == {"fc1": 0.92, "fc2": 0.91, "output": 0.74}
    assert "fc1 92%" in plan(r)[0].description


def test_per_layer_values_are_checked_one_by_one():
    message = error_of({**BASE, "steps": [{"method": "prune", "final_sparsity": {"fc1": 1.5}}]})
    assert message.startswith("steps[0].final_sparsity.fc1:") and "outside" in message
    message = error_of({**BASE, "steps": [{"method": "prune", "initial_sparsity": 0.6,
                                            "final_sparsity": {"fc1": 0.5}}]})
    assert message.startswith("steps[0].final_sparsity.fc1:") and "below initial_sparsity" in message


def test_learning_rate_schedules_are_choices_with_defaults_unchanged():
    r = recipe([{"method": "prune", "lr_schedule": "cosine"}],
               baseline={"arch": "lenet_300_100", "lr_schedule": "exponential", "decay_rate": 0.8,
                         "weight_decay": 1e-4})
    assert r.steps[0].training()["lr_schedule"] == "cosine"
    assert r.baseline.training() == {"epochs": 2, "batch_size": 128, "learning_rate": 1e-3,
                                     "lr_schedule": "exponential", "decay_rate": 0.8, "weight_decay": 1e-4,
                                     "label_smoothing": 0.0, "augment_shift": 0}
    assert recipe().baseline.lr_schedule == "constant"
    assert "'sometimes' is not one of: constant, cosine, exponential" in error_of(
        {**BASE, "steps": [{"method": "cluster", "lr_schedule": "sometimes"}]})


def test_seeds_are_bounded_where_libraries_would_fail_later():
    assert error_of({**BASE, "baseline": {"arch": "lenet_300_100", "seed": 2**40}}).startswith("baseline.seed:")


def test_an_architecture_too_big_for_the_datasets_images_is_refused_before_running():
    message = error_of({"dataset": "digits", "baseline": {"arch": "lenet_5_caffe"}})
    assert message.startswith("baseline.arch: lenet_5_caffe needs images of at least 16×16; digits has 8×8")
    assert Recipe.from_dict({"dataset": "mnist", "baseline": {"arch": "lenet_5_caffe"}}).baseline.arch == "lenet_5_caffe"


def test_the_baseline_takes_label_smoothing_and_random_shifts_within_bounds():
    ok = Recipe.from_dict({"dataset": "mnist", "baseline": {"arch": "lenet_5", "label_smoothing": 0.1,
                                                            "augment_shift": 2}})
    assert ok.baseline.training()["augment_shift"] == 2 and ok.baseline.to_dict()["label_smoothing"] == 0.1
    assert "distill_alpha" not in ok.baseline.training()  # a baseline has no teacher
    for field, bad, message in [("label_smoothing", 0.7, "0.7 is outside [0, 0.5]"),
                                ("augment_shift", 9, "9 is above the maximum 8"),
                                ("augment_shift", 1.5, "1.5 is not a whole number")]:
        with pytest.raises(RecipeError) as e:
            Recipe.from_dict({"dataset": "mnist", "baseline": {"arch": "lenet_5", field: bad}})
        assert str(e.value).startswith(f"baseline.{field}: {message}")
