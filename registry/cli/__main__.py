"""`python -m registry.cli`: the `subnets` command."""

from registry.cli import app

app()
