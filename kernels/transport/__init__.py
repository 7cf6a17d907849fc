"""Effective transport properties of voxel mesostructures (pore-scale PETSc solves).

- :mod:`.tortuosity`: Dirichlet-face diffusion solve -> tau, D_eff (multi-phase D maps), tau(x)
- :mod:`.homogenisation`: periodic cell problems -> full 3x3 effective tensor
- :mod:`.electrode`: electrode tortuosity tau_e (blocking electrolyte, transmission-line limit)
- :mod:`.percolation`: spanning / dead-end / isolated cluster analysis (6-connected)
- :mod:`.multiphase`: phase map -> voxel diffusivities; MacMullin number, Bruggeman exponent
- :mod:`.geometry`: surface areas, triple-phase boundary, two-point correlation, chord lengths
- :mod:`.fields`: HDF5 + XDMF export of concentration and flux fields
"""
from .electrode import electrode_tortuosity
from .homogenisation import effective_tensor
from .multiphase import derived_metrics, phase_diffusivity
from .percolation import percolating_mask, percolation_report
from .tortuosity import DirectionResult, VoxelDiffusivity, solve_direction, tortuosity

__all__ = ["percolating_mask", "percolation_report", "DirectionResult", "VoxelDiffusivity", "solve_direction",
           "tortuosity", "effective_tensor", "electrode_tortuosity", "phase_diffusivity", "derived_metrics"]
