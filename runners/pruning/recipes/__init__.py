"""The recipes that execute each pruning method of registry.methods, by the same names."""

from __future__ import annotations

from registry.catalogue import Catalogue
from registry.methods import METHODS
from runners.pruning.recipe import Recipe
from runners.pruning.recipes import attribution, importance, l0, magnitude

RECIPES: Catalogue[Recipe] = Catalogue("pruning method")
for _module in (magnitude, importance, attribution, l0):
    _name = _module.__name__.rsplit(".", 1)[-1]
    _recipe = Recipe(_name, _module.Params, _module.run, bounded_heap=getattr(_module, "BOUNDED_HEAP", False))
    RECIPES.add(_name, _recipe, METHODS.get(_name).summary)

__all__ = ["RECIPES", "attribution", "importance", "l0", "magnitude"]
