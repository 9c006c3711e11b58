"""The connection breaks just after a worker's claim of a trial committed: the worker's retry finds the trial RUNNING,
takes it for another worker's and moves on. Nobody runs it, and Optuna fails only trials with a stale heartbeat,
which this one never had. The retried claim leaves one heartbeat on the trial's behalf, so it goes stale after the
grace period and is retried like a dead worker's. A real SQLite RDB storage; the broken connection is simulated
at the one call it hits (a connection error after the claim's commit cannot be timed against a real server)."""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState
from sqlalchemy import exc as sa_exc

from runners.queue.outage import Outage, RetryingRDBStorage

GRACE_S = 1


@pytest.fixture
def broken_after_claim(monkeypatch):
    """The first claim (set RUNNING) commits, then its connection breaks."""
    real = RDBStorage.set_trial_state_values
    broken = []

    def claim_then_break(self, trial_id, state, values=None):
        done = real(self, trial_id, state, values)
        if state == TrialState.RUNNING and not broken:
            broken.append(trial_id)
            raise sa_exc.OperationalError("UPDATE trials", {}, Exception("server closed the connection"))
        return done

    monkeypatch.setattr(RDBStorage, "set_trial_state_values", claim_then_break)
    return broken


def _storage(tmp_path, cls, grace_s: int = GRACE_S, **kwargs) -> RDBStorage:
    return cls(
        f"sqlite:///{tmp_path / 'q.db'}",
        heartbeat_interval=1,
        grace_period=grace_s,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
        **kwargs,
    )


def _outage() -> Outage:
    """A worker's view of the database, as open_storage sets it up, with test-sized waits."""
    outage = Outage(echo=lambda _: None, retry_s=10, grace_s=GRACE_S)  # stale trials wait GRACE_S after an outage
    outage.backoff_cap_s = 0.01
    return outage


def _values(trial) -> dict:
    """An enqueued trial's values: its params once suggested, its fixed params until then."""
    return trial.params or trial.system_attrs.get("fixed_params", {})


def test_a_claim_that_committed_as_its_connection_broke_is_retried_after_the_grace_period(tmp_path, broken_after_claim):
    outage = _outage()
    storage = _storage(tmp_path, RetryingRDBStorage, outage=outage)
    study = optuna.create_study(study_name="grid", storage=storage)
    study.enqueue_trial({"rate": 0.2})
    asked = study.ask()  # the claim of the enqueued trial breaks after its commit; the retry finds it taken
    orphan = study.trials[0]
    assert broken_after_claim == [orphan._trial_id] and asked.number == 1  # ask() went on: #0 is nobody's
    assert orphan.state == TrialState.RUNNING and _values(orphan) == {"rate": 0.2}
    time.sleep(GRACE_S + 1.5)  # longer than the grace period: the beat left for #0 is stale
    study.tell(asked, 0.0)
    fail_stale_trials(study)
    states = {t.number: t.state for t in study.trials}
    assert states[0] == TrialState.FAIL  # failed as a dead worker's trial ...
    retried = [t for t in study.trials if t.state == TrialState.WAITING]
    assert [_values(t) for t in retried] == [{"rate": 0.2}]  # ... and back in the queue, for the next worker


def test_without_the_beat_the_same_claim_is_lost_for_good(tmp_path, broken_after_claim, monkeypatch):
    """The regression: Optuna's own storage leaves such a trial RUNNING with no heartbeat, never stale."""
    monkeypatch.setattr(RDBStorage, "record_heartbeat", lambda self, trial_id: None)
    outage = _outage()
    storage = _storage(tmp_path, RetryingRDBStorage, outage=outage)
    study = optuna.create_study(study_name="grid", storage=storage)
    study.enqueue_trial({"rate": 0.2})
    study.ask()
    time.sleep(GRACE_S + 1.5)
    fail_stale_trials(study)
    assert study.trials[0].state == TrialState.RUNNING  # nobody runs it, and nothing ever will
    assert not [t for t in study.trials if t.state == TrialState.WAITING]


def test_a_claim_another_worker_won_keeps_its_trial_alive(tmp_path, monkeypatch):
    """The beat a retried claim leaves is harmless when another worker did take the trial: that worker's own beats
    keep it fresh, so it is never failed under it. The grace period is wider than the beats' interval, and the check
    comes right after a beat, so a slow machine cannot make the winner's trial look stale."""
    grace_s = 2
    storage = _storage(tmp_path, RDBStorage, grace_s=grace_s)
    study = optuna.create_study(study_name="grid", storage=storage)
    study.enqueue_trial({"rate": 0.2})
    winner = study.ask()
    outage = _outage()
    loser = _storage(tmp_path, RetryingRDBStorage, grace_s=grace_s, outage=outage)
    real, calls = RDBStorage.set_trial_state_values, []

    def break_before_commit(self, trial_id, state, values=None):  # the loser's first try fails before it writes
        calls.append(trial_id)
        if len(calls) == 1:
            raise sa_exc.OperationalError("UPDATE trials", {}, Exception("server closed the connection"))
        return real(self, trial_id, state, values)

    monkeypatch.setattr(RDBStorage, "set_trial_state_values", break_before_commit)
    assert loser.set_trial_state_values(winner._trial_id, TrialState.RUNNING) is False
    assert calls == [winner._trial_id] * 2
    monkeypatch.setattr(RDBStorage, "set_trial_state_values", real)
    for _ in range(2 * grace_s):  # the winner beats on, as its heartbeat thread does, past the loser's beat's grace
        time.sleep(1)
        storage.record_heartbeat(winner._trial_id)
    fail_stale_trials(study)
    assert study.trials[0].state == TrialState.RUNNING
    assert not [t for t in study.trials if t.state == TrialState.WAITING]
