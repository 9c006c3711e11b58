"""Pruning: the units of an encoder and the gates on them (the one mask API), weight and gate masks on
disk, the recipe contract and one recipe per method, the controls and re-fine-tuned variants of a kept
subnetwork, and the export of a structured subnetwork as a smaller model."""

from runners.pruning.gates import Gates, attach
from runners.pruning.recipe import PruneContext, PruneStep, Recipe, RecipeOutcome, StopPruning
from runners.pruning.recipes import RECIPES
from runners.pruning.units import UnsupportedArchitecture

__all__ = [
    "Gates",
    "attach",
    "PruneContext",
    "PruneStep",
    "Recipe",
    "RecipeOutcome",
    "StopPruning",
    "RECIPES",
    "UnsupportedArchitecture",
]
