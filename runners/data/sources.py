"""Read a declared data source (local csv/tsv/jsonl/parquet file, or a hub dataset) into Examples."""

from __future__ import annotations

from typing import Any, Iterable

from registry.datafiles import is_unlabelled, parse_label, read_records, resolve, subcase_columns
from runners.data.examples import Example


class SourceError(ValueError):
    pass


def read_rows(source, base_dir: str) -> list[dict[str, Any]]:
    """Every row of the source as {column: value}: a local file through registry.datafiles.read_records (the
    reader validation checked it with), a hub dataset through the datasets library."""
    if source.hub is not None:
        return _hub_rows(source)
    path = resolve(source.path, base_dir)
    if not path.exists():
        raise SourceError(f"data file not found: {path}")
    try:
        start, count = source.span()
        return source.thin([row for _, row in read_records(path, source.header, count, start=start).rows])
    except ValueError as e:  # an unknown file type, a jsonl line that is not an object
        raise SourceError(f"{path}: {e}") from e


def _hub_rows(source) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a declared dependency
        raise SourceError("hub datasets need the `datasets` package") from e
    split = source.split or "train"
    start, count = source.span()
    if start or count:  # the datasets library's slice syntax: split[start:end]
        split = f"{split}[{start or ''}:{start + count if count else ''}]"
    try:
        ds = datasets.load_dataset(source.hub, source.config, split=split, revision=source.revision)
    except Exception as e:  # offline machines land here: say what was asked for
        at = f", revision {source.revision!r}" if source.revision else ""
        raise SourceError(
            f"cannot load hub dataset {source.hub!r} (config {source.config!r}, split {split!r}{at}): {e}"
        ) from e
    return source.thin(list(ds))


def to_examples(
    rows: Iterable[dict[str, Any]], source, labels: list[str], where: str, regression: bool = False
) -> list[Example]:
    """Map columns to Examples; labels may be indices, label names, or mapped by `label_map` (a
    regression task's are float scores). Rows without a gold label are skipped. Subcases join the
    values of the subcase column(s) with "/", the label column giving its label name."""
    out = []
    subcases = subcase_columns(source)
    for i, row in enumerate(rows):
        for col in (source.text_a, source.text_b, source.label, *subcases):
            if col is not None and col not in row:
                raise SourceError(f"{where}: column {col!r} not found (columns: {', '.join(map(str, row))})")
        label = parse_label(row[source.label], source.label_map, labels, regression)
        if label is None:
            if is_unlabelled(row[source.label]):
                continue  # unlabelled rows (e.g. SNLI without gold label, GLUE test splits)
            raise SourceError(
                f"{where}: row {i}: label {row[source.label]!r} is not one of {labels} and no label_map covers it"
            )
        text_b = str(row[source.text_b]).strip() if source.text_b else None
        sub = "/".join(labels[label] if c == source.label and not regression else str(row[c]) for c in subcases) or None
        out.append(Example(str(row[source.text_a]).strip(), text_b, label, sub))
    return out
