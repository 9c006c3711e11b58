"""Output scripts can read: `plan` and `status` never cut names off a terminal and take --format json|csv; the
status ETA is the remaining trials x the mean trial time so far, shared by the running workers."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import datetime, timedelta

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from registry.loader import load_runs
from registry.studyname import StudyName
from runners.queue.summaries import StudySummary, summarise
from tests.conftest import tiny_toml

GRID = (
    tiny_toml()
    .replace('name = "tiny"', 'name = "a-rather-long-experiment-name-for-attribution"')
    .replace("rate = 0.3", "rate = [0.2, 0.3]")
)


def _plan(toml, store, *args) -> subprocess.CompletedProcess:
    # a real process whose output is a pipe, as in `subnets plan | grep ...`
    return subprocess.run(
        [sys.executable, "-m", "registry.cli", "plan", "--file", str(toml), "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_plan_off_a_terminal_cuts_no_name(write_toml, tmp_path):
    toml = write_toml(GRID)
    proc = _plan(toml, tmp_path / "s")
    assert proc.returncode == 0, proc.stderr
    lines = [x for x in proc.stdout.splitlines() if "a-rather-long-experiment-name-for-attribution" in x]
    assert len(lines) == 2 and all("…" not in x for x in lines)
    for r in load_runs(toml):
        assert r.fingerprint in proc.stdout and r.label() in proc.stdout


def test_plan_as_json_and_csv_has_every_expanded_run(write_toml, tmp_path):
    toml = write_toml(GRID)
    runs = load_runs(toml)
    doc = json.loads(_plan(toml, tmp_path / "s", "--format", "json").stdout)
    assert doc["studies"] == []  # nothing queued yet
    assert [
        (
            r["experiment"],
            r["method"],
            r["axes"],
            r["seed"],
            r["prune_seed"],
            r["finetune_fingerprint"],
            r["status"],
            r["fingerprint"],
        )
        for r in doc["runs"]
    ] == [
        (
            r.experiment,
            r.prune.method,
            dict(r.axes),
            r.seed,
            r.prune_seed,
            r.finetune_fingerprint,
            "to_run",
            r.fingerprint,
        )
        for r in runs
    ]
    rows = list(csv.DictReader(io.StringIO(_plan(toml, tmp_path / "s", "--format", "csv").stdout)))
    assert [row["fingerprint"] for row in rows] == [r.fingerprint for r in runs]
    assert [json.loads(row["axes"]) for row in rows] == [dict(r.axes) for r in runs]
    assert not (tmp_path / "s").exists()  # plan is read-only


def _finished(number: int, seconds: float, state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    start = datetime(2026, 1, 1, 12, 0, 0) + timedelta(hours=number)
    trial = create_trial(
        state=state,
        value=0.5 if state is TrialState.COMPLETE else None,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        user_attrs={"constraint": [0.0]},
    )
    trial.datetime_start, trial.datetime_complete = start, start + timedelta(seconds=seconds)
    return trial


def test_the_eta_is_the_remaining_trials_times_the_mean_trial_time(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    grid = optuna.create_study(study_name=StudyName.grid("e").format(), storage=url)
    for number, seconds in enumerate((60.0, 120.0)):  # mean 90 s
        grid.add_trial(_finished(number, seconds))
    grid.add_trial(_finished(2, 30.0, TrialState.PRUNED))  # ended too: the mean is 70 s
    for _ in range(4):
        grid.enqueue_trial({"x": 0.5})
    (summary,) = summarise(url, [StudyName.grid("e")])
    assert summary.remaining == 4 and summary.mean_trial_s == 70.0
    assert summary.eta_s == 4 * 70.0  # no worker running: one would take them in turn
    two_running = StudySummary(**{**vars(summary), "running": [(5, "h:1", 3.0), (6, "h:2", 9.0)]})
    assert two_running.eta_s == 4 * 70.0 / 2
    fresh = StudySummary(**{**vars(summary), "mean_trial_s": None})
    assert fresh.eta_s is None  # nothing finished yet: no estimate
