"""Workers never idle behind a shared fine-tuning: with fewer models to fine-tune than workers, `subnets run
--workers N` fine-tunes them first on every core, and the workers load them from the cache."""

from __future__ import annotations

import json

from runners.tracking import Store
from runners.tracking.provenance import usable_cores
from tests import preloaded
from tests.conftest import tiny_toml

GRID = tiny_toml(max_steps=2).replace("rate = 0.3", "rate = [0.2, 0.3, 0.4]")  # three runs, one fine-tuned model


def test_a_model_the_workers_share_is_fine_tuned_first_with_every_core(write_toml, tmp_path):
    toml = write_toml(GRID)
    args = [
        "run",
        "--file",
        str(toml),
        "--store",
        str(tmp_path / "s"),
        "--workers",
        "2",
        "--quiet",
    ]
    proc = preloaded.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cores = usable_cores()  # this process's allocation, as the command's
    assert f"fine-tuning 1 shared model(s) first, on all {cores} cores" in proc.stdout
    (record,) = (tmp_path / "s" / ".subnets" / "finetuned").glob("*/record.json")
    assert json.loads(record.read_text())["torch_threads"] == cores  # trained here, not by a worker on its share
    client = Store.at(tmp_path / "s").client
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], "tags.`subnets.kind` = 'run'")
    assert len(runs) == 3 and {r.data.tags["subnets.finetune_cache"] for r in runs} == {"hit"}
    assert {r.info.status for r in runs} == {"FINISHED"}

    again = preloaded.run(args, capture_output=True, text=True, timeout=600)  # nothing left: nothing fine-tuned
    assert again.returncode == 0 and "fine-tuning" not in again.stdout, again.stdout + again.stderr
