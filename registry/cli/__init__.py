"""The `subnets` command line, one module per verb group. It only parses arguments and calls library functions.

It is the composition root: commands import runners/ and reports/ lazily, inside their bodies, so `validate` and
`plan` never load torch, transformers, MLflow or DuckDB. The rest of registry/ imports neither package.
"""

import inspect

from registry.cli import declare, queue, results, running  # noqa: F401 - each registers its commands, in help order
from registry.cli.common import GC_THRESHOLDS, app, main


def _reflow_help() -> None:
    """Typer's rich help keeps a docstring's line breaks (all but the first paragraph's in a command's own help, the
    first paragraph's in the list of commands), so its sentences would break at the docstring's width, not the
    terminal's: each command's help is its docstring with every paragraph on one line, for rich to wrap."""
    for command in app.registered_commands:
        paragraphs = inspect.cleandoc(command.callback.__doc__ or "").split("\n\n")
        command.help = "\n\n".join(" ".join(p.split()) for p in paragraphs)


_reflow_help()  # once every command is registered (the imports above)

__all__ = ["GC_THRESHOLDS", "app", "main"]
