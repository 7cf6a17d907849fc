"""Effective transport properties of voxel mesostructures (pore-scale PETSc solves)."""
from .percolation import percolating_mask
from .tortuosity import DirectionResult, solve_direction, tortuosity

__all__ = ["percolating_mask", "DirectionResult", "solve_direction", "tortuosity"]
