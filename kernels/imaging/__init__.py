"""Voxel images: reading labelled volumes (TIFF stacks, .npy, HDF5) and phase maps."""
from .io import LabelledVolume, read_volume

__all__ = ["LabelledVolume", "read_volume"]
