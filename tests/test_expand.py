"""Grid expansion and fingerprints."""
from __future__ import annotations

from registry.loader import load_runs
from tests.conftest import tiny_toml


def test_lists_in_sweepable_fields_expand_into_a_grid_times_seeds(write_toml):
    text = tiny_toml().replace("lr = 1e-3", "lr = [1e-3, 3e-4]").replace("rate = 0.3", "rate = [0.1, 0.2]")
    text = text.replace("seeds = [0]", "seeds = [0, 1, 2]")
    runs = load_runs(write_toml(text))
    assert len(runs) == 2 * 2 * 3
    points = {(r.finetune.lr, r.prune.params.rate, r.seed) for r in runs}
    assert len(points) == 12
    assert runs[0].axes == {"finetune.lr": 1e-3, "prune.rate": 0.1}
    assert len({r.fingerprint for r in runs}) == 12


def test_list_typed_fields_are_values_not_axes(write_toml):
    text = tiny_toml().replace("rate = 0.3", "strengths = [0.2, 0.5]")
    (run,) = load_runs(write_toml(text))
    assert run.prune.params.strengths == [0.2, 0.5] and run.axes == {}


def test_fingerprint_is_stable_and_ignores_presentation(write_toml, tmp_path):
    a = load_runs(write_toml(tiny_toml(), "a.toml"))[0]
    reordered = tiny_toml().replace("epochs = 1.0\nlr = 1e-3", "lr = 1e-3\nepochs = 1.0")
    reworded = reordered.replace("tiny end-to-end check", "other words") + '\n'
    b = load_runs(write_toml(reworded, "b.toml"))[0]
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16
    assert a.fingerprint == load_runs(write_toml(tiny_toml(), "c.toml"))[0].fingerprint
    c = load_runs(write_toml(tiny_toml().replace("lr = 1e-3", "lr = 2e-3"), "d.toml"))[0]
    assert c.fingerprint != a.fingerprint
    # pruning settings change the run, not the fine-tuned model it starts from
    d = load_runs(write_toml(tiny_toml(rate=0.2), "e.toml"))[0]
    assert d.fingerprint != a.fingerprint and d.finetune_fingerprint == a.finetune_fingerprint
    assert c.finetune_fingerprint != a.finetune_fingerprint


def test_defaults_merge_deeply_and_experiments_override(write_toml):
    text = tiny_toml() + '\n[[experiment]]\nname = "two"\nfinetune = { lr = 5e-4 }\nprune = { method = "magnitude" }\n'
    runs = {r.experiment: r for r in load_runs(write_toml(text))}
    assert runs["two"].finetune.lr == 5e-4 and runs["two"].finetune.batch_size == 32  # rest from [defaults]
    assert runs["two"].model.name == "micro-bert" and runs["two"].prune.params.rate == 0.1  # method default
