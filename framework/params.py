"""Declarations of deck parameters: each declared once with type, default,
range or choices, units and doc. Validation coerces a raw YAML value or raises
``ValueError`` with a message that the deck layer decorates with path and line.
"""
from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass, field
from typing import Any


class _Required:
    def __repr__(self):
        return "required"


REQUIRED = _Required()


@dataclass(frozen=True)
class Reference:
    """``stage.output`` (a named output of an earlier stage) or ``stage.output.key[.key...]``
    (an entry of a dict-valued output, e.g. ``image.volume_fractions.nmc``)."""

    stage: str
    output: str
    key: tuple = ()

    def __str__(self):
        return ".".join((self.stage, self.output) + tuple(self.key))


@dataclass
class ValidationContext:
    """What a value may refer to: the deck's folder and the earlier stages' outputs."""

    base_dir: str = "."
    earlier_outputs: dict = field(default_factory=dict)  # stage name -> iterable of output names
    check_files: bool = True


def suggest(word, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# ---- value kinds -------------------------------------------------------------

class Kind:
    name = "any"

    def coerce(self, value, ctx: ValidationContext):
        return value


class Scalar(Kind):
    def __init__(self, pytype):
        self.pytype = pytype
        self.name = pytype.__name__

    def coerce(self, value, ctx):
        t = self.pytype
        if t is bool:
            if isinstance(value, bool):
                return value
            raise ValueError(f"expected true or false, got {value!r}")
        if isinstance(value, bool):
            raise ValueError(f"expected {t.__name__}, got boolean {value!r}")
        if t is int:
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"expected an integer, got {value!r}")
        if t is float:
            if isinstance(value, (int, float)):
                return float(value)
            if isinstance(value, str):
                try:  # YAML 1.1 reads 1e-6 (no dot) as a string
                    return float(value)
                except ValueError:
                    pass
            raise ValueError(f"expected a number, got {value!r}")
        if t is str:
            if isinstance(value, str):
                return value
            raise ValueError(f"expected a string, got {value!r}")
        raise TypeError(t)


class ListOf(Kind):
    def __init__(self, item: Kind, min_len=0, max_len=None, scalar_ok=True):
        self.item, self.min_len, self.max_len, self.scalar_ok = item, min_len, max_len, scalar_ok
        self.name = f"list of {item.name}"

    def coerce(self, value, ctx):
        if not isinstance(value, (list, tuple)):
            if not self.scalar_ok:
                raise ValueError(f"expected a list, got {value!r}")
            value = [value]
        out = []
        for i, v in enumerate(value):
            try:
                out.append(self.item.coerce(v, ctx))
            except ValueError as e:
                raise ValueError(f"item {i}: {e}") from None
        if len(out) < self.min_len or (self.max_len is not None and len(out) > self.max_len):
            want = (f"exactly {self.min_len}" if self.min_len == self.max_len
                    else f"{self.min_len} to {self.max_len if self.max_len is not None else 'any number of'}")
            raise ValueError(f"expected {want} items, got {len(out)}")
        return out


class Mapping(Kind):
    """A free-form mapping (e.g. PETSc options, phase names -> labels)."""

    def __init__(self, value: Kind | None = None):
        self.value = value
        self.name = "mapping" if value is None else f"mapping of {value.name}"

    def coerce(self, value, ctx):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {value!r}")
        if self.value is None:
            return dict(value)
        out = {}
        for k, v in value.items():
            try:
                out[str(k)] = self.value.coerce(v, ctx)
            except ValueError as e:
                raise ValueError(f"key '{k}': {e}") from None
        return out


class FilePath(Kind):
    name = "file path"

    def __init__(self, must_exist=True):
        self.must_exist = must_exist

    def coerce(self, value, ctx):
        if not isinstance(value, str) or not value:
            raise ValueError(f"expected a file path, got {value!r}")
        path = value.split("::", 1)[0]  # file.h5::dataset
        full = path if os.path.isabs(path) else os.path.normpath(os.path.join(ctx.base_dir, path))
        if self.must_exist and ctx.check_files and not os.path.exists(full):
            raise ValueError(f"file not found: {full}")
        return full + (("::" + value.split("::", 1)[1]) if "::" in value else "")


class Ref(Kind):
    """A reference ``stage.output`` to an earlier stage's output, or ``stage.output.key`` to an
    entry of a dict-valued output (the entry is checked when the run reaches it)."""

    name = "reference stage.output"

    def coerce(self, value, ctx):
        if isinstance(value, Reference):
            return value
        if not isinstance(value, str) or "." not in value:
            raise ValueError(f"expected a reference 'stage.output', got {value!r}")
        stage, output, *key = value.split(".")
        if stage not in ctx.earlier_outputs:
            raise ValueError(f"reference to unknown stage '{stage}' (stages defined before this one: "
                             f"{', '.join(ctx.earlier_outputs) or 'none'}){suggest(stage, ctx.earlier_outputs)}")
        outs = ctx.earlier_outputs[stage]
        if output not in outs:
            raise ValueError(f"stage '{stage}' has no output '{output}' (it provides: {', '.join(sorted(outs))})"
                             f"{suggest(output, outs)}")
        return Reference(stage, output, tuple(key))


class OneOf(Kind):
    """First kind that accepts the value wins; errors of all kinds are reported."""

    def __init__(self, *kinds: Kind, prefer_ref_when_stage_matches=True):
        self.kinds = kinds
        self.name = " or ".join(k.name for k in kinds)

    def coerce(self, value, ctx):
        # a string whose prefix names an earlier stage is a reference, never a file
        if isinstance(value, str) and "." in value and value.split(".", 1)[0] in ctx.earlier_outputs:
            for k in self.kinds:
                if isinstance(k, Ref):
                    return k.coerce(value, ctx)
        errors = []
        for k in self.kinds:
            try:
                return k.coerce(value, ctx)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError("; or ".join(errors))


class Labels(Kind):
    """Phase selection: a name, a label value, or a list of either."""

    name = "phase name(s) or label value(s)"

    def coerce(self, value, ctx):
        items = value if isinstance(value, (list, tuple)) else [value]
        if not items:
            raise ValueError("expected at least one phase")
        out = []
        for v in items:
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise ValueError(f"expected a phase name or integer label, got {v!r}")
            out.append(v)
        return out


_SCALARS = {int: Scalar(int), float: Scalar(float), str: Scalar(str), bool: Scalar(bool),
            dict: Mapping(), list: ListOf(Kind(), scalar_ok=False)}


def as_kind(t) -> Kind:
    if isinstance(t, Kind):
        return t
    if t in _SCALARS:
        return _SCALARS[t]
    raise TypeError(f"no parameter kind for {t!r}")


@dataclass
class Param:
    """One deck parameter.

    ``min``/``max`` bound numbers (``min_exclusive``/``max_exclusive`` make the
    bound strict); ``choices`` restricts to listed values; ``units`` is shown by
    ``ionscale describe`` and written to the results file.
    """

    kind: Any
    default: Any = REQUIRED
    doc: str = ""
    units: str = ""
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    allow_none: bool = False

    def __post_init__(self):
        self.kind = as_kind(self.kind)

    @property
    def required(self):
        return self.default is REQUIRED

    def range_text(self) -> str:
        if self.choices is not None:
            return "{" + ", ".join(map(str, self.choices)) + "}"
        if self.min is None and self.max is None:
            return ""
        lo = "(" if self.min_exclusive else "["
        hi = ")" if self.max_exclusive else "]"
        return f"{lo}{'-inf' if self.min is None else self.min}, {'inf' if self.max is None else self.max}{hi}"

    def validate(self, value, ctx: ValidationContext):
        if value is None and (self.allow_none or self.default is None):
            return None
        value = self.kind.coerce(value, ctx)
        for v in (value if isinstance(value, list) else [value]):
            self._check_bounds(v)
        return value

    def _check_bounds(self, v):
        if self.choices is not None and v not in self.choices:
            raise ValueError(f"{v!r} is not one of {', '.join(map(repr, self.choices))}{suggest(v, self.choices)}")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if isinstance(v, float) and math.isnan(v):
                raise ValueError("NaN is not allowed")
            if self.min is not None and (v < self.min or (self.min_exclusive and v == self.min)):
                raise ValueError(f"{v} is out of range {self.range_text()}")
            if self.max is not None and (v > self.max or (self.max_exclusive and v == self.max)):
                raise ValueError(f"{v} is out of range {self.range_text()}")


@dataclass(frozen=True)
class Output:
    """A declared stage output, with units (\"1\" for dimensionless) and doc."""

    units: str = "1"
    doc: str = ""
