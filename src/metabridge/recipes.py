"""Named training recipes; they live in :mod:`metabridge.training.recipe` (this module re-exports them)."""

from __future__ import annotations

from .training.recipe import RECIPES, Recipe, get_recipe

__all__ = ["RECIPES", "Recipe", "get_recipe"]
