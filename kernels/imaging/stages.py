"""Stage adapter: ``image`` reads a labelled volume and names its phases."""
from __future__ import annotations

import numpy as np

from ionscale.errors import InputDataError
from ionscale.params import FilePath, ListOf, Mapping, OneOf, Output, Param, Scalar
from ionscale.stage import Stage, register

from .io import LabelledVolume, read_volume


def voxel_size_param(default=1.0):
    return Param(OneOf(Scalar(float), ListOf(Scalar(float), 3, 3, scalar_ok=False)), default=default, min=0,
                 min_exclusive=True, units="um", doc="voxel edge length, one value or [x, y, z]")


def as_voxel_size(v) -> tuple:
    return tuple(float(x) for x in (v if isinstance(v, (list, tuple, np.ndarray)) else [v] * 3))


@register("image")
class Image(Stage):
    """Read a labelled 3D image (multi-page TIFF, .npy, or HDF5 'file.h5::dataset')."""

    params = {
        "path": Param(FilePath(), doc="image file; HDF5 as file.h5::dataset"),
        "phases": Param(Mapping(Scalar(int)), default=None, doc="phase name -> label value, e.g. {pore: 0, nmc: 85}"),
        "voxel_size_um": voxel_size_param(),
        "crop": Param(ListOf(Scalar(int), 3, 3, scalar_ok=False), default=None, min=1,
                      doc="keep a box of this many voxels [nx, ny, nz] (from crop_offset)"),
        "crop_offset": Param(ListOf(Scalar(int), 3, 3, scalar_ok=False), default=[0, 0, 0], min=0,
                             doc="first voxel of the crop box"),
    }
    outputs = {
        "volume": Output("label", "3D label array (axis 0 = x)"),
        "phases": Output("label", "phase name -> label value"),
        "voxel_size_um": Output("um", "voxel size [x, y, z]"),
        "volume_fractions": Output("1", "volume fraction of each phase"),
    }

    def run(self, comm, inputs, params):
        # every rank reads (labels are small next to solver data; avoids a broadcast of GBs)
        labels = read_volume(params["path"])
        if params["crop"] is not None:
            o, n = params["crop_offset"], params["crop"]
            if any(oi + ni > si for oi, ni, si in zip(o, n, labels.shape)):
                raise InputDataError(f"{params['path']}: crop {n} at offset {o} exceeds the image shape "
                                     f"{list(labels.shape)}")
            labels = np.ascontiguousarray(labels[o[0]:o[0] + n[0], o[1]:o[1] + n[1], o[2]:o[2] + n[2]])
        phases = params["phases"] or {f"label_{v}": int(v) for v in np.unique(labels)}
        present = set(np.unique(labels).tolist())
        unnamed = sorted(present - set(phases.values()))
        if params["phases"] and unnamed:
            raise InputDataError(f"{params['path']}: labels {unnamed} are not named in 'phases' "
                                 f"(named: {phases}); add them so no voxel is silently dropped")
        vol = LabelledVolume(labels, phases, as_voxel_size(params["voxel_size_um"]))
        return {"volume": labels, "phases": phases, "voxel_size_um": np.array(vol.voxel_size_um),
                "volume_fractions": vol.volume_fractions()}
