"""Stage types: thin adapters that declare parameters and outputs and call a kernel.

Registering a new type is one decorator::

    @register("tortuosity")
    class Tortuosity(Stage):
        '''Steady diffusion through one phase of a voxel image.'''
        params = {"phase": Param(Labels(), doc="conducting phase(s)")}
        outputs = {"tau": Output("1", "tortuosity factor")}

        def run(self, comm, inputs, params):
            return {...}

Built-in types live beside their kernels (``ionscale.kernels.<domain>.stages``);
third-party packages add theirs through the ``ionscale.stages`` entry-point group.
"""
from __future__ import annotations

import importlib
from typing import Any

from .params import Output, Param

_REGISTRY: dict[str, type["Stage"]] = {}
_LOADED = False

#: modules that register the built-in stage types (imported lazily)
BUILTIN_STAGE_MODULES = (
    "ionscale.kernels.imaging.stages",
    "ionscale.kernels.mesostructure.stages",
    "ionscale.kernels.transport.stages",
    "ionscale.kernels.cell.stages",
    "ionscale.kernels.atomistic.stages",
)


class StageInputs(dict):
    """Resolved references of a stage: ``inputs[param]`` is the referenced value;
    ``inputs.siblings(param)`` all outputs of the referenced stage (e.g. the phase
    names and voxel size that travel with a volume)."""

    def __init__(self, values=None, siblings=None):
        super().__init__(values or {})
        self._siblings = siblings or {}

    def siblings(self, param: str) -> dict:
        return self._siblings.get(param, {})


class Stage:
    """Base class of stage types. Subclasses set ``params`` and ``outputs`` and
    implement ``run(comm, inputs, params) -> dict`` returning every declared output
    (identical on all ranks of ``comm``)."""

    type_name: str = ""
    params: dict[str, Param] = {}
    outputs: dict[str, Output] = {}
    #: outputs whose names depend on parameters may be declared as a pattern list
    dynamic_outputs: bool = False

    def __init__(self, name: str):
        self.name = name

    @classmethod
    def declared_outputs(cls, params: dict | None = None) -> dict[str, Output]:
        return dict(cls.outputs)

    @classmethod
    def check(cls, params: dict) -> list[tuple[str, str]]:
        """Cross-parameter checks after each value validated: return (key, message) pairs."""
        return []

    def run(self, comm, inputs: StageInputs, params: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError(f"stage type '{self.type_name}' does not implement run()")

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


def register(type_name: str):
    def deco(cls):
        if type_name in _REGISTRY and _REGISTRY[type_name] is not cls:
            raise ValueError(f"stage type '{type_name}' registered twice")
        cls.type_name = type_name
        _REGISTRY[type_name] = cls
        return cls
    return deco


def _load_builtin():
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for mod in BUILTIN_STAGE_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            # a domain not yet present in this checkout (or its optional library missing)
            if e.name and (e.name == mod or mod.startswith(e.name + ".")):
                continue
            raise
    try:
        from importlib.metadata import entry_points
        for ep in entry_points(group="ionscale.stages"):
            ep.load()
    except Exception:  # a broken plugin must not take the built-in types down
        import logging
        logging.getLogger("ionscale").warning("could not load a stage plugin", exc_info=True)


def stage_types() -> dict[str, type[Stage]]:
    _load_builtin()
    return dict(sorted(_REGISTRY.items()))


def get_stage_type(name: str) -> type[Stage] | None:
    _load_builtin()
    return _REGISTRY.get(name)
