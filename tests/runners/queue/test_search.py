"""The search: declaration and validation, the bisection sampler, and a tiny sweep end to end."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from registry.cli import app
from registry.loader import ConfigError, load_runs
from runners.queue.samplers import BisectionSampler, withdrawn
from tests import preloaded
from tests.conftest import tiny_toml

L0 = (
    'method = "magnitude"\nrate = 0.3\nkeep_ratio = 0.0\nmax_steps = 3',
    'method = "l0"\ntargets = [0.5]\nschedule_scale = 0.002\ninit_log_alpha = 0.0',
)


def l0_search(search: str) -> str:
    return tiny_toml().replace(*L0) + "\n[experiment.search]\n" + search


def problems(write_toml, text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_runs(write_toml(text))
    return [f"{p.key}: {p.message}" for p in e.value.problems]


def test_search_space_is_checked_like_every_other_key(write_toml):
    msgs = problems(write_toml, l0_search('space = { targte = { low = 0.1, high = 0.9 } }\nsampler = "tpe"'))
    assert len(msgs) == 1 and "search.space.targte" in msgs[0] and "did you mean 'target'" in msgs[0]
    msgs = problems(write_toml, l0_search("space = { target = { low = 0.1, high = 1.5 } }"))
    assert "search.space.target: 1.5 is not a valid target" in msgs[0]
    msgs = problems(write_toml, l0_search("space = { lr = { low = 0.01, high = 1.0, log = true } }"))
    assert "search.sampler: the bisection sampler searches the size knob `target`" in msgs[0]
    msgs = problems(write_toml, l0_search('space = { target = { low = 0.1, high = 0.9 } }\nsampler = "grid"'))
    assert "needs a finite grid" in msgs[0]
    msgs = problems(write_toml, l0_search("space = { target = { low = 0.9, high = 0.1 } }"))
    assert "low (0.9) must be below high (0.1)" in msgs[0]
    msgs = problems(write_toml, l0_search('space = { target = { low = 0.1, high = 0.9 } }\nobjective = "pareto"'))
    assert "use tpe or random for pareto" in msgs[0]
    (run,) = load_runs(write_toml(l0_search("space = { target = { low = 0.1, high = 0.9, step = 0.1 } }")))
    assert run.search.sampler == "bisection" and run.search.keep_rule.threshold(0.8) == pytest.approx(0.72)


def test_search_does_not_change_the_runs_fingerprint(write_toml):
    plain = load_runs(write_toml(tiny_toml().replace(*L0), "a.toml"))[0]
    searched = load_runs(write_toml(l0_search("space = { target = { low = 0.1, high = 0.9 } }"), "b.toml"))[0]
    assert plain.fingerprint == searched.fingerprint


def _holds_below(boundary: float):
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("target", 0.05, 0.95, step=0.05)
        trial.set_user_attr("constraint", [x - boundary])  # holds (<= 0) up to the boundary
        return 1 - x

    return objective


@pytest.mark.parametrize("boundary", [0.05, 0.33, 0.62, 0.95])
def test_bisection_finds_the_largest_holding_value(boundary):
    sampler = BisectionSampler("target", 0.05, 0.95, step=0.05)
    study = optuna.create_study(sampler=sampler)
    n = 0
    while not sampler.finished(study):
        study.optimize(_holds_below(boundary), n_trials=1)
        n += 1
        assert n <= 6, "19 grid points take at most ceil(log2(20)) = 5 trials"
    lo, hi = sampler.bracket(study)
    expected = round(max(0.05 * k for k in range(1, 20) if 0.05 * k <= boundary + 1e-9), 10)
    assert lo == pytest.approx(expected)
    assert hi is None or hi == pytest.approx(expected + 0.05)


def test_bisection_spreads_parallel_workers():
    sampler = BisectionSampler("target", 0.0, 1.0, tolerance=0.01)
    study = optuna.create_study(sampler=sampler)
    first = study.ask()
    a = first.suggest_float("target", 0.0, 1.0)
    second = study.ask()  # the first is still running: the second worker must not propose the same value
    b = second.suggest_float("target", 0.0, 1.0)
    assert a == pytest.approx(0.5) and b != pytest.approx(a) and 0.0 < b < 1.0


def _search(boundary: float, siblings=None, *, slope: float = 1.0):
    """One seed's warm-started search over 0.05..0.95 in steps of 0.05; its trials (value, constraint), in order."""
    sampler = BisectionSampler("target", 0.05, 0.95, step=0.05, siblings=siblings)
    study = optuna.create_study(sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("target", 0.05, 0.95, step=0.05)
        trial.set_user_attr("constraint", [slope * (x - boundary)])
        return 1 - x

    while not sampler.finished(study) and len(study.trials) < 8:
        study.optimize(objective, n_trials=1)
    return [(t.params["target"], t.user_attrs["constraint"][0]) for t in study.trials], sampler.bracket(study)


def test_a_warm_search_starts_at_its_siblings_answer_and_borrows_their_failure_above_it():
    cold, (lo, hi) = _search(0.33)
    assert (lo, hi) == (pytest.approx(0.30), pytest.approx(0.35)) and len(cold) == 4
    # a seed that holds at 0.30 with less room than its sibling had: one trial, the failure at 0.35 borrowed
    tighter, (lo, hi) = _search(0.31, lambda: [cold])
    assert [x for x, _ in tighter] == [pytest.approx(0.30)] and (lo, hi) == (pytest.approx(0.30), None)
    # more room at 0.30 than the sibling had: it tries 0.35 itself, and finds it holds there too
    looser, _ = _search(0.36, lambda: [cold])
    assert [x for x, _ in looser][:2] == [pytest.approx(0.30), pytest.approx(0.35)]
    # a seed that fails where its sibling held walks one step down, and its own two trials close the bracket
    lower, (lo, hi) = _search(0.27, lambda: [cold])
    assert [x for x, _ in lower] == [pytest.approx(0.30), pytest.approx(0.25)]
    assert (lo, hi) == (pytest.approx(0.25), pytest.approx(0.30))


@pytest.mark.parametrize("boundary", [0.05, 0.12, 0.5, 0.62, 0.95])
def test_a_warm_search_far_from_its_siblings_still_finds_its_own_answer(boundary):
    """Two walking steps, then bisection of what is left: never a wrong answer, at most a few more trials."""
    cold, _ = _search(0.33)
    trials, (lo, hi) = _search(boundary, lambda: [cold])
    expected = round(max(0.05 * k for k in range(1, 20) if 0.05 * k <= boundary + 1e-9), 10)
    assert lo == pytest.approx(expected) and len(trials) <= 7


def test_without_a_closed_sibling_bracket_the_search_is_cold():
    half, _ = _search(0.33)
    trials, _ = _search(0.33, lambda: [half[:1]])  # the sibling has tried one value: nothing to start from
    assert [x for x, _ in trials] == [x for x, _ in half]


def test_warm_start_is_declared_for_bisection_only(write_toml):
    search = 'space = { target = { low = 0.1, high = 0.9 } }\nsampler = "tpe"\nwarm_start = "siblings"'
    msgs = problems(write_toml, l0_search(search))
    assert len(msgs) == 1 and "warm_start needs the bisection sampler" in msgs[0]


def test_a_sweep_over_pruning_seeds_starts_each_later_seed_at_its_siblings_answer(write_toml, tmp_path):
    """One worker, three pruning seeds of one fine-tuned model: seed 0's search is cold, and the next seed's first
    trial is seed 0's answer (a real sweep; the sibling searches are read from the queue's storage)."""
    from registry.studyname import StudyName
    from runners.queue.samplers import bracket_of, evidence
    from runners.queue.storage import open_storage

    text = l0_search('space = { target = { low = 0.1, high = 0.9, step = 0.2 } }\ntrials = 4\nwarm_start = "siblings"')
    seeds = 'description = "x"\nprune_seeds = [0, 1, 2]'
    toml = write_toml(text.replace('description = "tiny end-to-end check"', seeds))
    store_dir = tmp_path / "s"
    result = CliRunner().invoke(app, ["sweep", "tiny", "--file", str(toml), "--store", str(store_dir), "--quiet"])
    assert result.exit_code == 0, result.output
    storage = open_storage(f"sqlite:///{store_dir / 'optuna.db'}")
    runs = sorted(load_runs(toml), key=lambda r: r.prune_seed)
    studies = [optuna.load_study(study_name=StudyName.of_search(r).format(), storage=storage) for r in runs]
    tried = [[t.params["target"] for t in s.trials] for s in studies]
    first = evidence(studies[0], "target")
    answer, above = bracket_of(first)
    if answer is not None and (above is not None or answer == pytest.approx(0.9)):
        assert tried[1][0] == pytest.approx(answer)  # warm: it starts where seed 0 ended
        assert len(tried[1]) <= 2 and len(tried[2]) <= 2
    else:  # seed 0 found nothing that holds: nothing to start from, seed 1 searches cold
        assert tried[1] == tried[0]


def test_without_speculation_two_workers_never_run_two_trials_of_one_search(write_toml, tmp_path):
    """speculate = false: the second worker waits for the running trial's answer instead of guessing a value."""
    from registry.studyname import StudyName
    from runners.queue.storage import open_storage

    search = "space = { target = { low = 0.1, high = 0.9, step = 0.2 } }\ntrials = 3\nspeculate = false"
    toml = write_toml(l0_search(search))
    store_dir = tmp_path / "s"
    args = ["sweep", "tiny", "--file", str(toml), "--store", str(store_dir), "--workers", "2", "--quiet"]
    result = preloaded.run(args, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = load_runs(toml)
    storage = open_storage(f"sqlite:///{store_dir / 'optuna.db'}")
    trials = optuna.load_study(study_name=StudyName.of_search(run).format(), storage=storage).trials
    # two workers that asked at the same moment: the later trial stepped aside before it sampled a value
    stepped_aside = [t for t in trials if withdrawn(t)]
    assert all(t.state == TrialState.PRUNED and not t.params for t in stepped_aside)
    ran = [t for t in trials if not withdrawn(t)]
    assert len(ran) >= 2
    spans = sorted((t.datetime_start, t.datetime_complete) for t in ran)
    assert all(end <= nxt for (_, end), (nxt, _) in zip(spans, spans[1:]))  # one after another


def test_of_two_search_trials_asked_at_once_without_speculation_the_later_steps_aside(write_toml, tmp_path):
    """The race the test above may or may not meet: two workers look (nothing running), each asks for a trial. With
    speculate = false the trial that started first runs; the other is withdrawn before it samples a value, and the
    budget, the summaries and the next look do not count it."""
    from registry.studyname import StudyName
    from runners.queue import Worker, summarise
    from runners.queue.storage import open_storage
    from runners.tracking import Progress, Store

    search = "space = { target = { low = 0.1, high = 0.9, step = 0.2 } }\ntrials = 3\nspeculate = false"
    toml = write_toml(l0_search(search))
    store_dir = tmp_path / "s"
    args = ["sweep", "tiny", "--file", str(toml), "--store", str(store_dir), "--quiet", "--trials", "1"]
    result = CliRunner().invoke(app, args)  # one trial: the bracket is still open
    assert result.exit_code == 0, result.output
    (run,) = load_runs(toml)
    url = f"sqlite:///{store_dir / 'optuna.db'}"
    name = StudyName.of_search(run)
    study = optuna.load_study(study_name=name.format(), storage=open_storage(url))
    before = [t.number for t in study.trials]
    study.set_user_attr("trials", len(before) + 1)  # room for one more trial
    first, second = study.ask(), study.ask()  # two workers' claims, at once
    worker = Worker(load_runs(toml), url, Store.at(store_dir), Progress(enabled=False))
    with pytest.raises(optuna.TrialPruned):
        worker._search_objective(name, study)(second)
    frozen = study._storage.get_trial(second._trial_id)
    assert frozen.user_attrs["withdrawn"] and "trial %d" % first.number in frozen.user_attrs["reason"]
    study.tell(second, state=TrialState.PRUNED)
    assert worker._has_work(name) is False  # the first is running: nothing to do but wait for its answer
    (summary,) = summarise(url, [name])
    assert summary.states.get(TrialState.PRUNED, 0) == 0 and summary.states[TrialState.RUNNING] == 1
    study.tell(first, state=TrialState.FAIL)
    assert worker._has_work(name) is True  # the withdrawn trial spent none of the budget


def test_sweep_end_to_end(write_toml, tmp_path):
    """A bisection search of the L0 target: trial runs are child runs of one sweep run, the effective size
    lands in the warehouse, and a second sweep finds nothing left to do."""
    from reports.warehouse import open_warehouse
    from runners.tracking import Store

    toml = write_toml(
        l0_search("space = { target = { low = 0.1, high = 0.9, step = 0.2 } }\ntrials = 6\nkeep_ratio = 0.5")
    )
    store_dir = tmp_path / "s"
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", "tiny", "--file", str(toml), "--store", str(store_dir), "--quiet"])
    assert result.exit_code == 0, result.output
    store = Store.at(store_dir)
    exp = store.client.get_experiment_by_name("tiny")
    (sweep,) = store.client.search_runs([exp.experiment_id], filter_string="tags.`subnets.kind` = 'sweep'")
    trials = store.client.search_runs([exp.experiment_id], filter_string="tags.`subnets.kind` = 'run'")
    assert 1 <= len(trials) <= 3  # 5 grid points, tolerance one step: at most 3 bisection trials
    assert all(t.data.tags["mlflow.parentRunId"] == sweep.info.run_id for t in trials)
    assert {t.data.tags["subnets.study"] for t in trials} == {sweep.data.tags["subnets.study"]}
    assert sorted(int(t.data.tags["subnets.trial"]) for t in trials) == list(range(len(trials)))
    assert sweep.info.status == "FINISHED" and sweep.data.metrics["trials.complete"] == len(trials)
    with open_warehouse(store.tracking_uri) as wh:
        (row,) = wh.named_rows("SELECT * FROM effective_size WHERE eval_set = 'id'")
    assert row["found_by"] == "search" and row["runs_used"] == len(trials) and row["keep_rule"] == "ratio"
    if "effective_size" in sweep.data.metrics:  # a target held: the study and the warehouse agree on it
        assert row["effective_units"] == pytest.approx(sweep.data.metrics["effective_size"])
    again = runner.invoke(app, ["sweep", "tiny", "--file", str(toml), "--store", str(store_dir), "--quiet"])
    assert again.exit_code == 0, again.output
    assert len(store.client.search_runs([exp.experiment_id], filter_string="tags.`subnets.kind` = 'run'")) == len(
        trials
    )


def test_reporter_reports_the_best_holding_size_and_stops_hopeless_trials():
    from registry.search import SearchSpec
    from runners.pruning.recipe import PruneStep, StopPruning
    from runners.queue.measure import Reporter
    from runners.training.evaluate import EvalResult

    class FakeTrial:
        def __init__(self, prune_at):
            self.reported, self.prune_at = [], prune_at

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return len(self.reported) > self.prune_at

    search = SearchSpec(space={"target": {"low": 0.1, "high": 0.9}}, keep="margin", margin=0.05)
    res = lambda acc: {"id": EvalResult("id", "id", int(acc * 100), 100)}  # noqa: E731
    trial = FakeTrial(prune_at=99)
    reporter = Reporter(trial, search, use_pruner=True)
    for step, (acc, sparsity) in enumerate([(0.80, 0.0), (0.78, 0.2), (0.70, 0.4), (0.76, 0.5)]):
        reporter(PruneStep(step, sparsity, res(acc), True, unit_sparsity=sparsity))
    # 0.78 and 0.76 hold (>= 0.75), 0.70 does not: the best kept fraction only improves when a step holds
    assert trial.reported == [(0, 1.0), (1, 0.8), (2, 0.8), (3, 0.5)]
    stopping = Reporter(FakeTrial(prune_at=1), search, use_pruner=True)
    stopping(PruneStep(0, 0.0, res(0.8), True))
    with pytest.raises(StopPruning):
        stopping(PruneStep(1, 0.2, res(0.8), True))


def test_a_run_stopped_by_a_search_callback_is_not_a_finished_run(write_toml, tmp_path):
    from registry.keeprule import KeepRule
    from registry.loader import load_runs
    from registry.studyname import StudyName
    from registry.tracking import RunStatus, StopReason
    from runners.pruning.recipe import StopPruning
    from runners.run import RunContext, execute
    from runners.tracking import Progress, Store

    def stop_at_two(step):
        if step.step == 2:
            raise StopPruning

    spec = load_runs(write_toml(tiny_toml(max_steps=3)))[0]
    store = Store.at(tmp_path / "s")
    store.ensure()
    study = StudyName.of_search(spec)
    trial = RunContext.search_trial(study, 0, KeepRule.ratio(0.9), callbacks=(stop_at_two,))
    outcome = execute(spec, store, Progress(enabled=False), trial)
    assert outcome.stop_reason is StopReason.CALLBACK and [s.step for s in outcome.pruned_steps] == [0, 1, 2]
    run = store.client.get_run(outcome.run_id)
    assert run.info.status == RunStatus.KILLED and run.data.tags["subnets.stopped_by"] == "search"
    assert run.data.tags["subnets.study"] == f"subnets/tiny/search/{spec.fingerprint}"
    assert run.data.tags["subnets.trial"] == "0"
    assert store.run_status("tiny") == {spec.fingerprint: "KILLED"}  # `subnets run` would still run it


def test_pareto_sweep_keeps_a_front(write_toml, tmp_path):
    import optuna

    from runners.queue import open_storage, search_study

    toml = write_toml(
        l0_search(
            'space = { target = { low = 0.2, high = 0.8 } }\nsampler = "random"\nobjective = "pareto"\ntrials = 2'
        )
    )
    result = CliRunner().invoke(
        app, ["sweep", "tiny", "--file", str(toml), "--store", str(tmp_path / "s"), "--quiet"], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    (base,) = load_runs(toml)
    study = optuna.load_study(
        study_name=search_study(base), storage=open_storage(f"sqlite:///{tmp_path / 's' / 'optuna.db'}")
    )
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE", "MAXIMIZE"]  # kept, ID, hans_like
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 2 and all(len(t.values) == 3 for t in trials)
    assert 1 <= len(study.best_trials) <= 2 and "on the Pareto front" in result.output


def test_a_reused_trial_is_measured_as_a_fresh_one(write_toml, tmp_path):
    """A trial whose fingerprint already ran reads its figures back from MLflow (measure_logged); they must equal
    what the fresh run measured (measure_steps), also when the trial's one L0 target failed the keep rule (its
    kept step is then the full model, while the subnetwork measured is the target's)."""
    from types import SimpleNamespace

    from registry.tracking import SELECTED_SPARSITY, SELECTED_STEP
    from runners.pruning.recipe import PruneStep, kept_step
    from runners.queue.measure import measure_logged, measure_steps
    from runners.run.steplog import StepLogger
    from runners.training.evaluate import EvalResult

    class Logged:  # the run a StepLogger writes to, read back as MLflow's client would
        run_id = "r"

        def __init__(self):
            self.history: dict[str, dict[int, float]] = {}

        def metrics(self, values, step):
            for k, v in values.items():
                self.history.setdefault(k, {})[step] = v

        def flush(self):
            pass

        def artifact(self, path, directory):
            pass

        def get_metric_history(self, run_id, key):
            return [SimpleNamespace(step=s, value=v) for s, v in sorted(self.history.get(key, {}).items())]

    (spec,) = load_runs(write_toml(l0_search("space = { target = { low = 0.1, high = 0.9 } }")))

    def res(id_acc, ood):
        return {"id": EvalResult("id", "id", id_acc, 100), "hans_like": EvalResult("hans_like", "ood", ood, 100)}

    steps = [
        PruneStep(0, 0.0, res(80, 50), True),
        PruneStep(1, 0.45, res(60, 52), False, unit_sparsity=0.5, strength=0.5),
    ]  # fails: 0.60 < 0.9 x 0.80
    run = Logged()
    logger = StepLogger(run, {}, tmp_path, None)
    for s in steps:
        logger(s)
    kept = kept_step(steps)
    run.metrics({SELECTED_STEP: kept.step, SELECTED_SPARSITY: kept.sparsity}, step=0)
    logger.summarise(kept, [])

    fresh = measure_steps(steps, kept, spec)
    assert (fresh.step, fresh.kept_fraction, fresh.id_score, fresh.full_id_score, fresh.ood) == (
        1,
        pytest.approx(0.5),
        0.6,
        0.8,
        {"hans_like": 0.52},
    )
    assert measure_logged(SimpleNamespace(client=run), "r", spec) == fresh
