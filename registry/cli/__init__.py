"""The `subnets` command line, one module per verb group. It only parses arguments and calls library functions.

It is the composition root: commands import runners/ and reports/ lazily, inside their bodies, so `validate` and
`plan` never load torch, transformers, MLflow or DuckDB. The rest of registry/ imports neither package.
"""

from registry.cli import declare, queue, results, running  # noqa: F401 - each registers its commands, in help order
from registry.cli.common import GC_THRESHOLDS, app, main

__all__ = ["GC_THRESHOLDS", "app", "main"]
