"""A Hugging Face cache laid out offline, as a first online load would have left it, so that hub ids run through
the same code as on a machine that reaches the hub (with HF_HUB_OFFLINE=1, which makes both libraries read
their caches and never the network):

- a model repo in the hub cache's own snapshot layout: `hub/models--<org>--<name>/refs/main` naming a commit and
  `snapshots/<commit>/` holding the repo's files (here links to ../shared/models);
- a hub dataset in the `datasets` library's cache: `datasets/<org>___<name>/<config>/<version>/<hash>/` with
  the Arrow files and dataset_info.json its Parquet builder writes for a parquet-backed repo (every catalogue
  dataset is one, HANS through the hub's parquet export).
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from pathlib import Path

COMMIT = "5f1b0a8e9c3d4b2a6e7f8091a2b3c4d5e6f70819"  # the commit refs/main names in the laid-out model repo


def cache_model(hf_home: Path, repo: str, files_from: Path, commit: str = COMMIT) -> Path:
    """The model repo `repo` in the hub cache, its files linked from the directory `files_from`."""
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    for f in files_from.iterdir():
        if f.is_file() and f.suffix in (".json", ".txt", ".safetensors"):
            (snapshot / f.name).symlink_to(f.resolve())
    return snapshot


def cache_dataset(hf_home: Path, repo: str, config: str, splits: dict[str, list[dict]]) -> Path:
    """The hub dataset `repo` (configuration `config`) with these rows per split in the datasets cache, written
    by the datasets library's own Parquet builder as a first load of the repo's parquet files writes it."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.packaged_modules.parquet.parquet import Parquet

    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for split, rows in splits.items():
            files[split] = str(Path(tmp) / f"{split}.parquet")
            pq.write_table(pa.Table.from_pylist(rows), files[split])
        builder = Parquet(
            cache_dir=str(Path(tmp) / "build"), dataset_name=repo.split("/")[-1], config_name=config, data_files=files
        )
        builder.download_and_prepare()
        built = Path(builder.cache_dir)  # .../<name>/<config id>/<version>/<hash>
        namespace, name = repo.split("/")
        target = hf_home / "datasets" / f"{namespace}___{name}" / config / built.parts[-2] / built.parts[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(built, target)
    return target


def tsv_rows(path: Path, limit: int | None = None) -> list[dict]:
    """Rows of a shared TSV file (no quoting, as GLUE files are written)."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[:limit] if limit else rows


def offline_env(hf_home: Path) -> dict[str, str]:
    """The environment of a process that reads only these caches."""
    import os

    return {
        **os.environ,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
