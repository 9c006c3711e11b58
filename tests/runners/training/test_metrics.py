"""Task metrics (runners/training/metrics.py) against independent implementations (scikit-learn, SciPy),
and evaluate() computing them from a model's predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from registry.tasks import METRICS as CATALOGUE
from runners.data.examples import EvalSet, Example
from runners.training.evaluate import EncodedSet, evaluate
from runners.training.metrics import (
    METRICS,
    accuracy,
    compute,
    f1,
    mcc,
    pearson,
    ranks,
    spearman,
)

sk = pytest.importorskip("sklearn.metrics")
stats = pytest.importorskip("scipy.stats")


def _cases(seed: int, n: int, k: int):
    g = np.random.default_rng(seed)
    gold = g.integers(0, k, n)
    noisy = np.where(g.random(n) < 0.7, gold, g.integers(0, k, n))  # a model right ~70% of the time
    return gold, noisy


def test_the_catalogue_and_the_implementations_name_the_same_metrics():
    assert sorted(METRICS) == CATALOGUE.names()


@pytest.mark.parametrize("seed, n, k", [(0, 527, 2), (1, 50, 2), (2, 300, 3), (3, 17, 5)])
def test_classification_metrics_match_scikit_learn(seed, n, k):
    gold, pred = _cases(seed, n, k)
    assert accuracy(pred, gold) == pytest.approx(sk.accuracy_score(gold, pred), abs=1e-12)
    assert mcc(pred, gold) == pytest.approx(sk.matthews_corrcoef(gold, pred), abs=1e-12)
    if k == 2:
        assert f1(pred, gold) == pytest.approx(sk.f1_score(gold, pred, pos_label=1), abs=1e-12)


def test_metrics_by_hand_and_when_undefined():
    gold, pred = [1, 1, 1, 0, 0, 0, 1, 0], [1, 1, 0, 0, 0, 1, 1, 0]  # TP 3, TN 3, FP 1, FN 1
    assert mcc(pred, gold) == pytest.approx((3 * 3 - 1 * 1) / 16)  # (TP TN - FP FN) / sqrt(4 * 4 * 4 * 4)
    assert f1(pred, gold) == pytest.approx(6 / 8)
    assert mcc([1] * 6, [0, 1, 0, 1, 1, 0]) == 0.0 == sk.matthews_corrcoef([0, 1, 0, 1, 1, 0], [1] * 6)
    assert f1([0, 0], [0, 0]) == 0.0 and pearson([2.0] * 4, [0.0, 1.0, 2.0, 3.0]) == 0.0
    assert pearson([0.0, 1.0], [1.0, 3.0]) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correlations_match_scipy_with_ties(seed):
    g = np.random.default_rng(seed)
    gold = np.round(g.uniform(0, 5, 1500) * 5) / 5  # STS-B-like scores with many ties
    pred = gold + g.normal(0, 1.2, len(gold))
    pred[:40] = 2.5  # a run of tied predictions
    assert pearson(pred, gold) == pytest.approx(stats.pearsonr(pred, gold)[0], abs=1e-12)
    assert spearman(pred, gold) == pytest.approx(stats.spearmanr(pred, gold)[0], abs=1e-12)
    assert ranks([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_binary_metrics_are_left_out_on_a_set_with_more_labels():
    assert set(compute(["accuracy", "f1", "mcc"], [0, 1, 2], [0, 2, 2], n_labels=3)) == {"accuracy", "mcc"}


class _Fixed(torch.nn.Module):
    """A 'model' whose logits are given per example (by its first token id), to evaluate known predictions."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(logits, requires_grad=False)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states=False):
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.table[input_ids[:, 0]])


class _Ids:
    """A tokenizer that encodes example i (text "i") as the single token i."""

    def __call__(self, a, b=None, truncation=True, max_length=8, padding=False):
        return {"input_ids": [[int(t)] for t in a]}


def _encoded(examples, **kw) -> EncodedSet:
    return EncodedSet.build(_Ids(), EvalSet("id", "id", examples, **kw), 8)


def test_evaluate_computes_the_task_metrics_from_the_predictions():
    gold, pred = _cases(5, 200, 2)
    logits = torch.nn.functional.one_hot(torch.tensor(pred), 2).float()
    examples = [Example(str(i), None, int(y)) for i, y in enumerate(gold)]
    res = evaluate(
        _Fixed(logits), _encoded(examples, metrics=("accuracy", "mcc"), primary="mcc", labels=("a", "b")), 64, 0
    )
    assert res.accuracy == pytest.approx(sk.accuracy_score(gold, pred))
    assert res.score == res.metrics["mcc"] == pytest.approx(sk.matthews_corrcoef(gold, pred))


def test_evaluate_maps_three_way_predictions_onto_a_two_way_set():
    """MNLI -> HANS: neutral and contradiction predictions both count as non-entailment."""
    logits = torch.eye(3)[[0, 1, 2, 0, 2, 1]]
    gold = [0, 1, 1, 1, 0, 1]  # hits: 1, 1, 1, 0, 0, 1
    examples = [Example(str(i), None, y, "h/" + str(y)) for i, y in enumerate(gold)]
    res = evaluate(
        _Fixed(logits), _encoded(examples, pred_map=[0, 1, 1], labels=("entailment", "non_entailment")), 4, 0
    )
    assert (res.correct, res.n) == (4, 6) and res.subcases == {"h/0": (1, 2), "h/1": (3, 4)}


def test_evaluate_a_regression_set_uses_the_single_output():
    g = np.random.default_rng(3)
    gold = np.round(g.uniform(0, 5, 64), 2)
    out = torch.tensor(gold + g.normal(0, 1, 64), dtype=torch.float32)[:, None]
    examples = [Example(str(i), None, float(y)) for i, y in enumerate(gold)]
    res = evaluate(
        _Fixed(out), _encoded(examples, metrics=("pearson", "spearman"), primary="pearson", regression=True), 16, 0
    )
    assert np.isnan(res.accuracy) and res.n == 64
    assert res.score == pytest.approx(stats.pearsonr(out[:, 0].numpy(), gold)[0], abs=1e-6)
    assert res.metrics["spearman"] == pytest.approx(stats.spearmanr(out[:, 0].numpy(), gold)[0], abs=1e-6)
