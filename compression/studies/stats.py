"""The statistics the forgetting study needs, in numpy: Welch's t-test, multiple-comparison
corrections, per-class recall and modal labels.

Definitions follow Hooker et al., "What do compressed deep networks forget?" as their code
(google-research/pruning_identified_exemplars) computes them:

* a class's normalised recall is its recall minus the mean accuracy of its population; the
  two-sided Welch t-test compares the normalised recalls of the baseline population with those
  of the compressed one (``per_class_accuracy/gen_tstatistic.py``: ``ttest_ind(..., equal_var=False)``);
* a sample's modal label is the label most models of a population predict, ties going to the
  largest label (pandas' ``mode().max()`` in ``pie_dataset_gen/aggregate_predictions.py``); a
  pruning-identified exemplar (PIE) is a sample whose modal labels differ between the populations.

The Student t distribution's CDF comes from the regularised incomplete beta function
(a continued fraction, Numerical Recipes 6.4), so scipy is not needed.
"""

from __future__ import annotations

import math

import numpy as np

CORRECTIONS = {
    "none": "no correction: each class is tested at the threshold on its own",
    "bonferroni": "Bonferroni: each p-value is multiplied by the number of classes",
    "holm": "Holm's step-down method (controls the chance of any false flag, less conservative than Bonferroni)",
    "bh": "Benjamini-Hochberg (controls the expected share of false flags among the flagged classes)",
}


def _betacf(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if not math.isfinite(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def welch(a, b) -> tuple[float | None, float | None]:
    """Welch's two-sided t-test of two samples: (t, p). (None, None) when it is undefined: fewer than two
    values on a side, or no spread on either side (equal means then say nothing; different ones are certain:
    t infinite, p 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        return None, None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(a.mean() - b.mean())
    if va + vb == 0:
        return (None, None) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    return float(t), float(t_two_sided_p(t, df))


def adjust(p_values: list[float | None], method: str) -> list[float | None]:
    """p-values adjusted for testing them together (None stays None and does not count)."""
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}")
    idx = [i for i, p in enumerate(p_values) if p is not None]
    m = len(idx)
    out: list[float | None] = list(p_values)
    if method == "none" or m == 0:
        return out
    ps = np.array([p_values[i] for i in idx], dtype=np.float64)
    if method == "bonferroni":
        adj = np.minimum(1.0, ps * m)
    elif method == "holm":
        order = np.argsort(ps, kind="stable")
        stepped = np.maximum.accumulate((m - np.arange(m)) * ps[order])
        adj = np.empty(m)
        adj[order] = np.minimum(1.0, stepped)
    else:  # bh
        order = np.argsort(ps, kind="stable")
        ranked = ps[order] * m / (np.arange(m) + 1)
        stepped = np.minimum.accumulate(ranked[::-1])[::-1]
        adj = np.empty(m)
        adj[order] = np.minimum(1.0, stepped)
    for j, i in enumerate(idx):
        out[i] = float(adj[j])
    return out


def recalls(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class recall (NaN for a class absent from ``y_true``)."""
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        mask = y_true == c
        if mask.any():
            out[c] = float(np.mean(y_pred[mask] == c))
    return out


def modal_labels(predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """The most frequent label per sample over a population (rows: models), ties to the largest label."""
    preds = np.asarray(predictions, dtype=np.int64)
    counts = np.zeros((preds.shape[1], num_classes), dtype=np.int64)
    for row in preds:
        counts[np.arange(preds.shape[1]), row] += 1
    # argmax takes the first maximum: reverse the classes so the largest label wins a tie
    return (num_classes - 1 - np.argmax(counts[:, ::-1], axis=1)).astype(np.int64)


__all__ = ["CORRECTIONS", "adjust", "betainc", "modal_labels", "recalls", "t_two_sided_p", "welch"]
