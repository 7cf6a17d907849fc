"""Synthetic mesostructures (generators with fixed seeds) for tests, demos and studies."""
from .generate import overlapping_spheres

__all__ = ["overlapping_spheres"]
