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
    reworded = reordered.replace("tiny end-to-end check", "other words") + "\n"
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


def test_pruning_seeds_are_declared_apart_from_fine_tuning_seeds(write_toml):
    """The Heuristic Core's design: many pruned subnetworks of one fine-tuned model, differing only in the
    pruning seed. Each fine-tuning seed is fine-tuned once; every pruning seed prunes each of them."""
    text = tiny_toml().replace("seeds = [0]", "seeds = [0, 1]\nprune_seeds = [7, 8, 9]")
    runs = load_runs(write_toml(text))
    assert [(r.seed, r.prune_seed) for r in runs] == [(s, p) for s in (0, 1) for p in (7, 8, 9)]
    assert len({r.fingerprint for r in runs}) == 6
    assert len({r.finetune_fingerprint for r in runs}) == 2  # one fine-tuned model per fine-tuning seed
    assert len({r.group for r in runs}) == 1  # seeds of one grid point group together
    assert runs[0].label() == "seed=0, prune_seed=7"


def test_undeclared_pruning_seed_is_the_fine_tuning_seed_and_keeps_old_fingerprints(write_toml):
    (run,) = load_runs(write_toml(tiny_toml()))
    assert run.prune_seed == run.seed == 0 and "prune_seed" not in run.identity()
    same = load_runs(write_toml(tiny_toml().replace("seeds = [0]", "seeds = [0]\nprune_seeds = [0]"), "b.toml"))[0]
    assert same.fingerprint == run.fingerprint  # declaring the default changes nothing
    other = load_runs(write_toml(tiny_toml().replace("seeds = [0]", "seeds = [0]\nprune_seeds = [1]"), "c.toml"))[0]
    assert other.fingerprint != run.fingerprint and other.finetune_fingerprint == run.finetune_fingerprint
    assert other.group == run.group


def test_device_is_not_part_of_the_fingerprint_but_bf16_is(write_toml):
    base = load_runs(write_toml(tiny_toml()))[0]
    cpu = load_runs(write_toml(tiny_toml() + '\n[experiment.runtime]\ndevice = "cpu"\n', "b.toml"))[0]
    bf16 = load_runs(write_toml(tiny_toml() + '\n[experiment.runtime]\nprecision = "bf16"\n', "c.toml"))[0]
    assert cpu.fingerprint == base.fingerprint and cpu.runtime.device == "cpu"
    assert bf16.fingerprint != base.fingerprint and bf16.finetune_fingerprint != base.finetune_fingerprint
