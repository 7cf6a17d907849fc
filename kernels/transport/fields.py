"""Field export: HDF5 datasets plus an XDMF sidecar that ParaView/VisIt open directly.

Voxel (cell-centred) data on a uniform grid: XDMF ``3DCoRectMesh`` with
Dimensions = cells + 1 (nodes) and ``Center="Cell"`` attributes. XDMF lists axes
slowest first, so numpy axis 0 (our x) appears as ParaView's Z axis. Flux fields
are face fluxes averaged to voxel centres: q_a = -D_h (dc/dx_a) per unit area.
Both files are written to temporaries and renamed, so readers never see partial files.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np


def centre_flux(c: np.ndarray, Dv, spacing, axis_bc=None, c_bc=(1.0, 0.0)) -> list:
    """Flux density components (3 arrays) at voxel centres from a concentration field.
    Face flux = harmonic-mean D * (c_p - c_q) / h; a voxel's value is the mean of its two faces.
    With ``axis_bc`` the Dirichlet faces of that axis carry 2 D (c_bc - c) / h."""
    from .tortuosity import _harmonic

    D = Dv.block((slice(None),) * 3)
    h = np.asarray(spacing, dtype=np.float64)
    out = []
    for a in range(3):
        n = c.shape[a]
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[a], hi[a] = slice(0, n - 1), slice(1, n)
        lo, hi = tuple(lo), tuple(hi)
        face = _harmonic(D[lo], D[hi]) * (c[lo] - c[hi]) / h[a]
        q = np.zeros(c.shape)
        q[lo] += 0.5 * face
        q[hi] += 0.5 * face
        if a == axis_bc:
            first = [slice(None)] * 3
            last = [slice(None)] * 3
            first[a], last[a] = slice(0, 1), slice(n - 1, n)
            first, last = tuple(first), tuple(last)
            q[first] += 0.5 * 2 * D[first] * (c_bc[0] - c[first]) / h[a]
            q[last] += 0.5 * 2 * D[last] * (c[last] - c_bc[1]) / h[a]
        out.append(q)
    return out


def _xdmf(h5name: str, shape, spacing, datasets: dict, root: str = "") -> str:
    dims = " ".join(str(s + 1) for s in shape)
    cdims = " ".join(str(s) for s in shape)
    h = " ".join(repr(float(x)) for x in spacing)
    grids = []
    for grid, names in datasets.items():
        attrs = "\n".join(
            f'      <Attribute Name="{n}" AttributeType="Scalar" Center="Cell">\n'
            f'        <DataItem Dimensions="{cdims}" NumberType="Float" Precision="{p}" Format="HDF">'
            f'{h5name}:{root}/{grid}/{n}</DataItem>\n      </Attribute>' for n, p in names)
        grids.append(f'    <Grid Name="{grid}" GridType="Uniform">\n'
                     f'      <Topology TopologyType="3DCoRectMesh" Dimensions="{dims}"/>\n'
                     f'      <Geometry GeometryType="ORIGIN_DXDYDZ">\n'
                     f'        <DataItem Dimensions="3" NumberType="Float" Format="XML">0 0 0</DataItem>\n'
                     f'        <DataItem Dimensions="3" NumberType="Float" Format="XML">{h}</DataItem>\n'
                     f'      </Geometry>\n{attrs}\n    </Grid>')
    body = "\n".join(grids)
    return ('<?xml version="1.0" ?>\n<!DOCTYPE Xdmf SYSTEM "Xdmf.dtd" []>\n<Xdmf Version="3.0">\n  <Domain>\n'
            f'{body}\n  </Domain>\n</Xdmf>\n')


def write_xdmf(xdmf_path: str, h5name: str, fields: dict, spacing, root: str = "") -> str:
    """Atomically write an XDMF file describing ``fields`` ({grid: {name: array}}) stored in
    ``h5name`` (relative to the XDMF file) under the HDF5 group path ``root``."""
    folder = os.path.dirname(os.path.abspath(xdmf_path)) or "."
    os.makedirs(folder, exist_ok=True)
    shape = next(iter(next(iter(fields.values())).values())).shape
    listing = {g: [(n, np.asarray(a).dtype.itemsize) for n, a in arrays.items()] for g, arrays in fields.items()}
    fd, tmp = tempfile.mkstemp(prefix=".fields.", suffix=".xdmf.tmp", dir=folder)
    with os.fdopen(fd, "w") as fh:
        fh.write(_xdmf(h5name, shape, spacing, listing, root))
    os.chmod(tmp, 0o644)
    os.replace(tmp, xdmf_path)
    return xdmf_path


def write_fields(path_h5: str, fields: dict, spacing, units: dict | None = None) -> str:
    """``fields``: {grid name: {dataset name: 3D array}} (all the same shape). Writes
    ``path_h5`` and ``path_h5`` with suffix .xdmf atomically; returns the XDMF path."""
    import h5py

    folder = os.path.dirname(os.path.abspath(path_h5)) or "."
    os.makedirs(folder, exist_ok=True)
    shape = None
    listing = {}
    fd, tmp = tempfile.mkstemp(prefix=".fields.", suffix=".h5.tmp", dir=folder)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            for grid, arrays in fields.items():
                g = f.create_group(grid)
                listing[grid] = []
                for name, arr in arrays.items():
                    arr = np.asarray(arr)
                    shape = shape or arr.shape
                    if arr.shape != shape:
                        raise ValueError(f"field {grid}/{name} has shape {arr.shape}, expected {shape}")
                    ds = g.create_dataset(name, data=arr, chunks=True if arr.nbytes > (1 << 16) else None)
                    if units and name in units:
                        ds.attrs["units"] = units[name]
                    listing[grid].append((name, arr.dtype.itemsize))
            f.attrs["voxel_size"] = np.asarray(spacing, dtype=np.float64)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path_h5)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    xdmf_path = os.path.splitext(path_h5)[0] + ".xdmf"
    fd, tmp = tempfile.mkstemp(prefix=".fields.", suffix=".xdmf.tmp", dir=folder)
    with os.fdopen(fd, "w") as fh:
        fh.write(_xdmf(os.path.basename(path_h5), shape, spacing, listing))
    os.chmod(tmp, 0o644)
    os.replace(tmp, xdmf_path)
    return xdmf_path
