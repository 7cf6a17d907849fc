"""Results files: one HDF5 file per run, a group per stage, units on every
dataset, provenance at ``/provenance``. Every write goes to a temporary file in
the same folder that is then renamed over the old one, so a crash never leaves a
truncated file in place of a good one."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ResultsError

_KIND = "ionscale_kind"


@dataclass
class StageRecord:
    """A finished stage: what ran, its hash (for ``--restart``) and its outputs."""

    name: str
    type: str
    hash: str
    params: dict
    outputs: dict
    units: dict = field(default_factory=dict)
    docs: dict = field(default_factory=dict)
    wall_time_s: float = 0.0
    ranks: int = 1
    reused: bool = False


def _to_jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def to_json(obj) -> str:
    return json.dumps(_to_jsonable(obj), sort_keys=True)


def write_value(group, name: str, value, units: str | None = None, doc: str | None = None):
    """Store a Python/numpy value under ``group[name]`` so ``read_value`` gives it back."""
    if isinstance(value, dict):
        sub = group.create_group(name)
        sub.attrs[_KIND] = "dict"
        for k, v in value.items():
            write_value(sub, str(k), v)
        obj = sub
    elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        big = value.nbytes > (1 << 16)
        obj = group.create_dataset(name, data=value, compression="gzip" if big and value.dtype.kind in "biu" else None,
                                   compression_opts=1 if big and value.dtype.kind in "biu" else None,
                                   chunks=True if big else None)
        obj.attrs[_KIND] = "array"
    elif isinstance(value, (bool, np.bool_)):
        obj = group.create_dataset(name, data=np.bool_(value))
        obj.attrs[_KIND] = "bool"
    elif isinstance(value, (int, float, np.integer, np.floating)):
        obj = group.create_dataset(name, data=value)
        obj.attrs[_KIND] = "scalar"
    elif isinstance(value, str):
        obj = group.create_dataset(name, data=value)
        obj.attrs[_KIND] = "str"
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in value):
        obj = group.create_dataset(name, data=np.asarray(value))
        obj.attrs[_KIND] = "list"
    else:
        obj = group.create_dataset(name, data=to_json(value))
        obj.attrs[_KIND] = "json"
    if units is not None:
        obj.attrs["units"] = units
    if doc:
        obj.attrs["doc"] = doc
    return obj


def read_value(obj):
    import h5py

    kind = obj.attrs.get(_KIND, "array" if isinstance(obj, h5py.Dataset) else "dict")
    if isinstance(kind, bytes):
        kind = kind.decode()
    if isinstance(obj, h5py.Group):
        return {k: read_value(obj[k]) for k in obj.keys()}
    data = obj[()]
    if kind == "array":
        return np.asarray(data)
    if kind == "list":
        return np.asarray(data).tolist()
    if kind == "bool":
        return bool(data)
    if kind == "scalar":
        return data.item() if hasattr(data, "item") else data
    if kind == "str":
        return data.decode() if isinstance(data, bytes) else str(data)
    if kind == "json":
        return json.loads(data.decode() if isinstance(data, bytes) else data)
    return data


def atomic_write(path: str, fill) -> None:
    """Create ``path`` by calling ``fill(h5file)`` on a temporary file, then rename it."""
    import h5py

    folder = os.path.dirname(os.path.abspath(path)) or "."
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
        os.close(fd)
    except OSError as e:
        raise ResultsError(f"cannot write results in {folder}: {e.strerror}") from None
    try:
        with h5py.File(tmp, "w") as f:
            fill(f)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise ResultsError(f"cannot write results file {path}: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ResultsFile:
    """The results of one run, kept in memory and rewritten atomically after each stage."""

    def __init__(self, path: str, provenance: dict):
        self.path = path
        self.provenance = provenance
        self.records: dict[str, StageRecord] = {}

    def add(self, record: StageRecord):
        self.records[record.name] = record

    def _fill(self, f):
        prov = f.create_group("provenance")
        for k, v in self.provenance.items():
            prov.attrs[k] = v if isinstance(v, (str, int, float)) else to_json(v)
        timings = {name: r.wall_time_s for name, r in self.records.items()}
        prov.attrs["stage_wall_time_s"] = to_json(timings)
        prov.attrs["stage_order"] = to_json(list(self.records))
        for name, r in self.records.items():
            g = f.create_group(name)
            g.attrs.update({"type": r.type, "hash": r.hash, "params": to_json(r.params), "status": "complete",
                            "wall_time_s": r.wall_time_s, "ranks": r.ranks, "reused": r.reused})
            for key, value in r.outputs.items():
                write_value(g, key, value, r.units.get(key, ""), r.docs.get(key))

    def write(self):
        atomic_write(self.path, self._fill)


def read_records(path: str) -> dict[str, StageRecord]:
    """Completed stages of an earlier results file (empty when there is none)."""
    import h5py

    if not os.path.exists(path):
        return {}
    try:
        with h5py.File(path, "r") as f:
            order = json.loads(f["provenance"].attrs.get("stage_order", "[]"))
            out = {}
            for name in order:
                g = f[name]
                if g.attrs.get("status") != "complete":
                    continue
                outputs = {k: read_value(g[k]) for k in g.keys()}
                units = {k: g[k].attrs.get("units", "") for k in g.keys()}
                out[name] = StageRecord(name, g.attrs["type"], g.attrs["hash"], json.loads(g.attrs["params"]),
                                        outputs, units, wall_time_s=float(g.attrs["wall_time_s"]),
                                        ranks=int(g.attrs["ranks"]))
            return out
    except (OSError, KeyError, ValueError) as e:
        raise ResultsError(f"cannot read earlier results {path} for --restart: {e}") from None


def load(path: str) -> dict[str, dict[str, Any]]:
    """Read a results file into ``{stage: {output: value}}`` (a convenience for notebooks)."""
    return {name: r.outputs for name, r in read_records(path).items()}
