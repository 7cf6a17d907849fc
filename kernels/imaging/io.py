"""Readers for labelled 3D images. Axis 0 is x (the first TIFF page index),
axis 1 is y, axis 2 is z."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ionscale.errors import InputDataError

SUFFIXES = (".tif", ".tiff", ".npy", ".h5", ".hdf5")


@dataclass
class LabelledVolume:
    labels: np.ndarray
    phases: dict = field(default_factory=dict)  # name -> label value
    voxel_size_um: tuple = (1.0, 1.0, 1.0)

    def volume_fractions(self) -> dict:
        values, counts = np.unique(self.labels, return_counts=True)
        by_label = dict(zip(values.tolist(), (counts / self.labels.size).tolist()))
        names = {v: k for k, v in self.phases.items()}
        return {names.get(v, f"label_{v}"): f for v, f in by_label.items()}


def read_volume(path: str, dataset: str | None = None) -> np.ndarray:
    """Read a 3D label image. ``path`` may be ``file.h5::dataset``."""
    if "::" in path:
        path, dataset = path.split("::", 1)
    if not os.path.exists(path):
        raise InputDataError(f"image file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext in (".tif", ".tiff"):
            import tifffile
            arr = tifffile.imread(path)
        elif ext == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif ext in (".h5", ".hdf5"):
            import h5py
            with h5py.File(path, "r") as f:
                if dataset is None:
                    names = [k for k in f if isinstance(f[k], h5py.Dataset) and f[k].ndim == 3]
                    if len(names) != 1:
                        raise InputDataError(f"{path}: name the 3D dataset with 'file.h5::name' "
                                             f"(3D datasets found: {names or 'none'})")
                    dataset = names[0]
                if dataset not in f:
                    raise InputDataError(f"{path}: no dataset '{dataset}' (has: {', '.join(f.keys())})")
                arr = f[dataset][()]
        else:
            raise InputDataError(f"{path}: unsupported image format '{ext}' (expected one of {', '.join(SUFFIXES)})")
    except InputDataError:
        raise
    except Exception as e:  # truncated or foreign files raise many different things
        raise InputDataError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None
    arr = np.asarray(arr)
    if arr.size == 0:
        raise InputDataError(f"{path}: cannot read image (no voxel data: empty or truncated file)")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise InputDataError(f"{path}: expected a 3D label image, got an array of shape {arr.shape}")
    if arr.dtype.kind not in "biu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int32)
        else:
            raise InputDataError(f"{path}: expected integer labels, got {arr.dtype} values")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return arr


def select_phase(labels: np.ndarray, phase, phases: dict | None = None) -> np.ndarray:
    """Boolean mask of the voxels whose label is in ``phase`` (names or label values)."""
    phases = phases or {}
    values = []
    for p in (phase if isinstance(phase, (list, tuple)) else [phase]):
        if isinstance(p, str):
            if p not in phases:
                from difflib import get_close_matches
                close = get_close_matches(p, list(phases), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise InputDataError(f"unknown phase name '{p}'{hint}; the image defines: "
                                     f"{', '.join(f'{k}={v}' for k, v in phases.items()) or 'no names (use label values)'}")
            values.append(phases[p])
        else:
            values.append(int(p))
    return np.isin(labels, values)
