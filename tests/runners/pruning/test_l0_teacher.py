"""L0's teacher predictions computed once (runners/pruning/teacher.py): the cached table against the per-step
forward it replaces, L0 trained with it against L0 without it, reuse without a teacher forward, and no reading of
a table written for other weights or another fine-tuned model."""

from __future__ import annotations

import copy
import math
import time

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from runners.data.examples import batches
from runners.pruning.gates import compute_unit_means
from runners.pruning.recipe import PruneContext
from runners.pruning.recipes import l0
from runners.pruning.teacher import cached_teacher, compute_teacher, rows_digest, weights_digest
from runners.tracking.progress import Progress
from runners.training.evaluate import EvalResult
from tests.runners.pruning.test_l0 import tiny_model

# A schedule short enough for a test (about 90 steps a target) on which the gates still move apart: the KL ranks
# the units (KL at the end 0.02-0.15), so a wrong teacher changes the log-alphas (see the last L0 test).
PARAMS = dict(targets=[0.3, 0.6], schedule_scale=0.01, init_log_alpha=5.0, lr=0.2, batch_size=16)

# The table's rows come from batches padded otherwise than the step's (sorted by length, 64 rows): the same
# function of the same weights, whose float32 sums a kernel may order otherwise for another padded width. That
# moves a log-probability by a few ulps of its magnitude, so the bound is TABLE_ULPS ulps of the largest |log p|
# (2.6 here: 4.9e-6). Seen: 1.2e-6, 5 ulps, on one CPU, where a fixed 1e-6 had been the bound. Through L0 a relative
# change of the KL gradient of ~2e-6 changes each Adam update (lr 0.2, normalised by sqrt(v)) by about as much
# relative, and ~90 updates of at most 0.2 move a log-alpha by at most 18: ~4e-5. LOG_ALPHA_ATOL = 1e-4 allows 2.5x
# that; the log-alphas that decide the final masks here are more than 1e-3 apart, 10x the tolerance, so equal masks
# are required, not implied.
TABLE_ULPS = 16
LOG_ALPHA_ATOL = 1e-4


def varied_rows(n: int = 96, seed: int = 0) -> list[dict]:
    """Encoded rows of 4..24 tokens (batches of them pad differently when sorted by length or shuffled)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(4, 25, (1,), generator=g))
        ids = torch.randint(1, 100, (length,), generator=g).tolist()
        label = int(torch.randint(0, 3, (1,), generator=g))
        out.append({"input_ids": ids, "token_type_ids": [0] * length, "label": label, "subcase": None})
    return out


def context(model, rows, seed: int = 0, teacher=None) -> PruneContext:
    """A run's context over `rows`: shuffled batches per (seed, epoch) as RunData cuts them, with Batch.indices."""

    def train_batches(n_examples=None, batch_size=32, shuffle=False, epoch=0):
        picked = rows[:n_examples] if n_examples else rows
        order = None
        if shuffle:
            order = torch.randperm(len(picked), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        return batches(picked, batch_size, 0, order.tolist() if order is not None else None)

    held_out = next(batches(varied_rows(64, seed=9), 64, 0))

    def evaluate():
        with torch.no_grad():
            pred = model(**held_out.model_inputs()).logits.argmax(-1)
        return {"id": EvalResult("id", "id", int((pred == held_out.labels).sum()), len(pred))}

    means = compute_unit_means(model, train_batches(64, 16))
    return PruneContext(
        model=model,
        evaluate=evaluate,
        baseline=evaluate(),
        progress=Progress(enabled=False),
        seed=seed,
        train_batches=train_batches,
        unit_means=lambda: means,
        teacher=teacher,
    )


class Forwards:
    """Counts the model's forward passes (a pre-hook on the whole model)."""

    def __init__(self, model):
        self.n = 0
        self.handle = model.register_forward_pre_hook(lambda m, a, k: setattr(self, "n", self.n + 1), with_kwargs=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def flat(step, key: str) -> torch.Tensor:
    t = step.scores if key == "scores" else {"head": step.gates.head, "mlp": step.gates.mlp}
    return torch.cat([t["head"].flatten(), t["mlp"]])


def test_table_rows_are_the_teacher_forward_of_each_example():
    model, rows = tiny_model(), varied_rows()
    table = compute_teacher(model, rows, pad_id=0)
    assert table.shape == (96, 3) and table.dtype == torch.float32
    assert torch.allclose(table.exp().sum(-1), torch.ones(96), atol=1e-6)  # log-probabilities
    order = torch.randperm(96, generator=torch.Generator().manual_seed(3)).tolist()
    ulp = torch.finfo(torch.float32).eps * table.abs().max().clamp_min(1)  # at the largest |log p|
    with torch.no_grad():
        for batch in batches(rows, 16, 0, order):  # shuffled, padded per batch: as L0's step used to compute it
            live = F.log_softmax(model(**batch.model_inputs()).logits.float(), dim=-1)
            assert torch.equal(batch.indices, torch.tensor(order[: len(batch.indices)]))
            order = order[len(batch.indices) :]
            assert (live - table[batch.indices]).abs().max() <= TABLE_ULPS * ulp
    assert not model.training  # left as it was (eval); a model in train mode is restored to train mode
    model.train()
    compute_teacher(model, rows[:5], pad_id=0)
    assert model.training


@pytest.mark.parametrize("model_seed,seed", [(0, 0), (1, 1)])
def test_l0_with_the_teacher_table_matches_l0_without_it(model_seed, seed):
    """Today's path (ctx.teacher None: a no_grad forward per step) against the table: log-alphas within
    LOG_ALPHA_ATOL, final masks, realised sparsities and evaluations equal."""
    model, rows = tiny_model(model_seed), varied_rows()
    p = l0.Params(**PARAMS)
    live = list(l0.run(context(model, rows, seed), p))
    table = compute_teacher(model, rows, pad_id=0)
    cached = list(l0.run(context(model, rows, seed, teacher=lambda: table), p))
    assert [s.strength for s in cached] == [s.strength for s in live] == [0.3, 0.6]
    for a, b in zip(live, cached):
        la = flat(a, "scores")
        assert (flat(b, "scores") - la).abs().max() <= LOG_ALPHA_ATOL
        gaps = la.sort().values.diff()
        assert gaps[gaps > 0].min() > 10 * LOG_ALPHA_ATOL  # the tolerance cannot swap two units of the mask
        assert torch.equal(flat(a, "gates"), flat(b, "gates"))
        assert a.unit_sparsity == b.unit_sparsity and a.results["id"].correct == b.results["id"].correct
        assert math.isclose(a.extra["kl_end"], b.extra["kl_end"], rel_tol=1e-4)
        assert a.extra["kl_end"] > 0.01  # the KL did rank the units


def test_the_table_decides_the_gates():
    """The comparison above can fail: a table of another model's predictions trains other gates."""
    model, rows = tiny_model(0), varied_rows()
    p = l0.Params(**PARAMS)
    own = list(l0.run(context(model, rows, teacher=lambda: compute_teacher(model, rows, 0)), p))
    other = compute_teacher(tiny_model(1), rows, 0)
    wrong = list(l0.run(context(model, rows, teacher=lambda: other), p))
    assert (flat(own[0], "scores") - flat(wrong[0], "scores")).abs().max() > 100 * LOG_ALPHA_ATOL


def test_cached_table_is_reused_without_a_teacher_forward(tmp_path):
    """One worker computes the file (one forward per 64 rows); another model object with the same weights (a
    second worker, target, seed or trial) reads it: no teacher forward, and L0 then runs one forward a step."""
    rows, path = varied_rows(), tmp_path / "teacher" / "ft-rows-48.safetensors"
    first = tiny_model(0)
    with Forwards(first) as f:
        table = cached_teacher(first, rows, 0, path)
    assert f.n == 2 and path.exists()  # 96 rows in batches of 64
    assert not list(path.parent.glob(".*.tmp"))  # written whole, nothing left beside it
    assert torch.equal(table, compute_teacher(first, rows, 0))

    second = copy.deepcopy(first)
    with Forwards(second) as f:
        again = cached_teacher(second, rows, 0, path)
    assert f.n == 0 and torch.equal(again, table)

    p = l0.Params(**PARAMS)
    ctx = context(second, rows, seed=1, teacher=lambda: cached_teacher(second, rows, 0, path))
    with Forwards(second) as f:
        steps = list(l0.run(ctx, p))
    trained = max(l0.schedule(p, t)[1] for t in p.targets)  # the targets train together, in one pass a step
    assert f.n == trained + len(steps)  # one student forward a step, one evaluation a target, no teacher
    live = context(second, rows, seed=1)
    with Forwards(second) as f:
        list(l0.run(live, p))  # without the table: a teacher forward every step
    assert f.n == 2 * trained + len(steps)


def test_a_table_of_other_weights_is_never_read(tmp_path):
    """Same path (same fingerprint, e.g. a fine-tuned model trained again), other weights: computed again and
    replaced, never read; a change of one weight by one ulp is enough."""
    rows, path = varied_rows(), tmp_path / "t.safetensors"
    a = tiny_model(0)
    cached_teacher(a, rows, 0, path)
    b = copy.deepcopy(a)
    with torch.no_grad():
        w = b.classifier.weight
        w[0, 0] = torch.nextafter(w[0, 0], torch.tensor(math.inf))
    assert weights_digest(b) != weights_digest(a)
    with Forwards(b) as f:
        table_b = cached_teacher(b, rows, 0, path)
    assert f.n == 2 and torch.equal(table_b, compute_teacher(b, rows, 0))  # computed again, from b
    with safe_open(str(path), framework="pt") as fh:
        assert fh.metadata()["weights"] == weights_digest(b)  # replaced by the latest writer's
    other = tiny_model(1)
    assert not torch.equal(cached_teacher(other, rows, 0, path), table_b)
    assert torch.equal(cached_teacher(other, rows, 0, path), compute_teacher(other, rows, 0))
    # rows: another row count is recomputed too, and the digest names the rows (truncation changes it)
    with Forwards(other) as f:
        assert cached_teacher(other, rows[:50], 0, path).shape == (50, 3)
    assert f.n == 1
    cut = [dict(r, input_ids=r["input_ids"][:12], token_type_ids=r["token_type_ids"][:12]) for r in rows]
    assert rows_digest(cut) != rows_digest(rows) and rows_digest(copy.deepcopy(rows)) == rows_digest(rows)


def test_runs_share_one_table_per_fine_tuned_model(tmp_path, write_toml, monkeypatch):
    """Through `subnets run`: two pruning seeds of one fine-tuned model compute the table once (one file, all
    256 training rows); an experiment with another fine-tuned model computes its own file, named by its
    fine-tune fingerprint."""
    from typer.testing import CliRunner

    from registry.cli import app
    from runners.pruning import teacher as teacher_module
    from runners.tracking.store import Store
    from tests.conftest import tiny_toml

    calls = []
    real = teacher_module.compute_teacher
    monkeypatch.setattr(teacher_module, "compute_teacher", lambda *a, **k: calls.append(1) or real(*a, **k))
    store, cache = tmp_path / "store", tmp_path / "store" / ".subnets" / "teacher"
    l0_prune = 'method = "l0"\ntargets = [0.5]\nkeep_ratio = 0.0\nschedule_scale = 0.002\nbatch_size = 16\n'
    text = tiny_toml("shared").replace('method = "magnitude"\nrate = 0.3\nkeep_ratio = 0.0\nmax_steps = 3\n', l0_prune)
    assert 'method = "l0"' in text
    other = text.replace("lr = 1e-3", "lr = 2e-3").replace('name = "shared"', 'name = "other"')
    shared = text.replace("seeds = [0]", "seeds = [0]\nprune_seeds = [1, 2]")

    def run(toml_text: str, name: str) -> list:
        result = CliRunner().invoke(
            app, ["run", "--file", str(write_toml(toml_text, f"{name}.toml")), "--store", str(store), "--quiet"]
        )
        assert result.exit_code == 0, result.output
        client = Store.at(store).client
        exp = client.get_experiment_by_name(name)
        return client.search_runs([exp.experiment_id], filter_string="tags.`subnets.kind` = 'run'")

    runs = run(shared, "shared")
    files = sorted(cache.glob("*.safetensors"))
    assert len(runs) == 2 and len(calls) == 1 and len(files) == 1
    with safe_open(str(files[0]), framework="pt") as fh:
        assert fh.get_slice("log_probs").get_shape() == [256, 2]  # every training row, 2 labels
    (other_run,) = run(other, "other")
    fingerprints = {r.data.tags["subnets.finetune_fingerprint"] for r in [*runs, other_run]}
    assert len(fingerprints) == 2 and len(calls) == 2
    assert {f.name.split("-")[0] for f in cache.glob("*.safetensors")} == fingerprints


def test_workers_computing_at_once_write_one_whole_table(tmp_path, monkeypatch):
    """Two workers (threads here; the lock is a flock, held per open file, so processes alike) asking for a missing
    table at once: one computes it under the lock, the other waits and reads that file."""
    import threading

    from runners.pruning import teacher as teacher_module

    rows, path = varied_rows(), tmp_path / "t.safetensors"
    model = tiny_model(0)
    computed, entered = [], threading.Event()
    real = teacher_module.compute_teacher

    def slow_compute(*a, **k):
        computed.append(1)
        entered.set()
        time.sleep(0.3)  # the other worker arrives while this one computes
        return real(*a, **k)

    monkeypatch.setattr(teacher_module, "compute_teacher", slow_compute)
    results: dict[int, torch.Tensor] = {}
    workers = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, cached_teacher(model, rows, 0, path)))
        for i in (0, 1)
    ]
    workers[0].start()
    assert entered.wait(10)
    workers[1].start()
    for w in workers:
        w.join(30)
    assert len(computed) == 1 and torch.equal(results[0], results[1])
    assert torch.equal(results[0], real(model, rows, 0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.lock", "t.safetensors"]  # no temporary left
