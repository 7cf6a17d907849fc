"""Decks: YAML (safe subset, never executes code) -> validated ``Plan``.

Validation collects *every* problem with its YAML path and line before raising
one ``DeckError``; it runs on rank 0 only (see ``comm.collective_call``).
"""
from __future__ import annotations

import copy
import itertools
import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import DeckError, DeckProblem
from .params import REQUIRED, Param, ValidationContext, suggest
from .stage import get_stage_type, stage_types


# ---- YAML with line numbers ----------------------------------------------------

class LineDict(dict):
    """A mapping that remembers the line of each key (1-based)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.key_lines: dict = {}
        self.line: int | None = None


class _LineLoader(yaml.SafeLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self.duplicates: list[tuple[str, int]] = []

    def construct_mapping(self, node, deep=False):
        self.flatten_mapping(node)
        out = LineDict()
        out.line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "found an unhashable key", key_node.start_mark) from None
            if key in out:
                self.duplicates.append((str(key), key_node.start_mark.line + 1))
            out[key] = self.construct_object(value_node, deep=True)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)


def load_yaml(text: str, filename: str = "deck"):
    """Parse YAML text safely; returns (tree, duplicate keys [(key, line)])."""
    loader = None
    try:
        loader = _LineLoader(text)
        tree = loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        msg = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise DeckError([DeckProblem("", f"YAML syntax error: {msg}", line, filename)]) from None
    except RecursionError:
        raise DeckError([DeckProblem("", "YAML nesting too deep", None, filename)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return tree, loader.duplicates


def _line(tree, key):
    return tree.key_lines.get(key, tree.line) if isinstance(tree, LineDict) else None


# ---- overrides -----------------------------------------------------------------

def parse_override(text: str) -> tuple[list[str], Any]:
    """``stages.tau.direction=y`` -> (['stages','tau','direction'], 'y'); the value is YAML."""
    if "=" not in text:
        raise DeckError([DeckProblem("--set", f"'{text}' is not of the form path.to.key=value")])
    path, value = text.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    keys = [k for k in path.strip().split(".") if k]
    if not keys:
        raise DeckError([DeckProblem("--set", f"'{text}' names no key")])
    return keys, parsed


def apply_override(tree: dict, keys: list[str], value, source="--set") -> DeckProblem | None:
    node = tree
    for i, k in enumerate(keys[:-1]):
        if not isinstance(node, dict) or k not in node:
            where = ".".join(keys[:i]) or "deck"
            choices = list(node) if isinstance(node, dict) else []
            return DeckProblem(source, f"{'.'.join(keys)}: '{where}' has no key '{k}'{suggest(k, choices)}")
        node = node[k]
    if not isinstance(node, dict):
        return DeckProblem(source, f"{'.'.join(keys)}: '{'.'.join(keys[:-1])}' is not a mapping")
    node[keys[-1]] = value
    return None


# ---- plan ----------------------------------------------------------------------

RUN_PARAMS = {
    "name": Param(str, default=None, doc="run name; results go to <output>/<name>.h5 (default: deck file name)"),
    "output": Param(str, default="results", doc="results folder, relative to the working directory"),
    "seed": Param(int, default=0, min=0, doc="base random seed; each stage derives its own"),
    "description": Param(str, default="", doc="free text stored in the provenance"),
}

SWEEP_PARAMS = {
    "over": Param(dict, doc="mapping 'stages.<stage>.<param>' -> list of values"),
    "mode": Param(str, default="product", choices=("product", "zip"),
                  doc="product: all combinations; zip: i-th values together"),
    "ranks_per_case": Param(int, default=1, min=1, doc="MPI ranks given to each case (split communicator)"),
}


@dataclass
class StagePlan:
    name: str
    type: str
    params: dict
    line: int | None = None

    @property
    def cls(self):
        return get_stage_type(self.type)


@dataclass
class Plan:
    run: dict
    stages: list[StagePlan]
    deck_text: str = ""
    deck_path: str = ""
    overrides: list[str] = field(default_factory=list)
    sweep: dict | None = None
    cases: list[dict] = field(default_factory=list)  # sweep: one override mapping per case
    case_plans: list["Plan"] = field(default_factory=list)

    @property
    def results_path(self) -> str:
        return os.path.join(self.run["output"], f"{self.run['name']}.h5")


def _validate_block(block, spec: dict[str, Param], path: str, ctx, problems, filename, skip=()):
    out = {}
    if not isinstance(block, dict):
        problems.append(DeckProblem(path, f"expected a mapping, got {block!r}", None, filename))
        return out
    for key in block:
        if key in skip:
            continue
        if key not in spec:
            problems.append(DeckProblem(f"{path}.{key}", f"unknown key '{key}'{suggest(key, spec)}"
                                        f" (valid keys: {', '.join(spec)})", _line(block, key), filename))
    for key, p in spec.items():
        if key not in block:
            if p.required:
                problems.append(DeckProblem(f"{path}.{key}", f"missing required key '{key}' ({p.doc})",
                                            getattr(block, "line", None), filename))
            else:
                out[key] = copy.deepcopy(p.default)
            continue
        try:
            out[key] = p.validate(block[key], ctx)
        except ValueError as e:
            problems.append(DeckProblem(f"{path}.{key}", str(e), _line(block, key), filename))
    return out


def _find_key_path(tree, key, line, prefix=""):
    """YAML path of ``key`` defined at ``line`` (the later of two duplicates)."""
    if isinstance(tree, LineDict):
        for k, v in tree.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            if k == key and tree.key_lines.get(k) == line:
                return path
            found = _find_key_path(v, key, line, path)
            if found:
                return found
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            found = _find_key_path(v, key, line, f"{prefix}[{i}]")
            if found:
                return found
    return None


def _strip_lines(obj):
    if isinstance(obj, dict):
        return {k: _strip_lines(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strip_lines(v) for v in obj]
    return obj


def build_plan(tree, *, filename="deck", base_dir=".", deck_text="", overrides=(), check_files=True,
               duplicates=(), default_name="run") -> Plan:
    problems: list[DeckProblem] = [DeckProblem(_find_key_path(tree, k, ln) or k,
                                               f"duplicate key '{k}' (defined twice; stage names and keys "
                                               f"must be unique)", ln, filename) for k, ln in duplicates]
    if not isinstance(tree, dict):
        raise DeckError(problems + [DeckProblem("", "a deck is a mapping with 'run:' and 'stages:' blocks",
                                                None, filename)])
    for key in tree:
        if key not in ("run", "stages", "sweep"):
            problems.append(DeckProblem(key, f"unknown top-level key '{key}'{suggest(key, ('run', 'stages', 'sweep'))}"
                                        " (valid: run, stages, sweep)", _line(tree, key), filename))
    ctx = ValidationContext(base_dir=base_dir, check_files=check_files)
    run = _validate_block(tree.get("run", LineDict()), RUN_PARAMS, "run", ctx, problems, filename)
    if not run.get("name"):
        run["name"] = default_name
    stages_raw = tree.get("stages")
    stage_plans: list[StagePlan] = []
    if not isinstance(stages_raw, dict) or not stages_raw:
        problems.append(DeckProblem("stages", "expected a non-empty mapping of named stages, each with 'type:'",
                                    _line(tree, "stages"), filename))
        stages_raw = {}
    known = stage_types()
    for name, block in stages_raw.items():
        path = f"stages.{name}"
        line = _line(stages_raw, name)
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            problems.append(DeckProblem(path, f"stage name {name!r} must be letters, digits, '_' or '-'", line, filename))
            continue
        if not isinstance(block, dict) or "type" not in block:
            problems.append(DeckProblem(path, "a stage is a mapping with a 'type:' key "
                                        f"(types: {', '.join(known)})", line, filename))
            continue
        tname = block["type"]
        cls = known.get(tname) if isinstance(tname, str) else None
        if cls is None:
            problems.append(DeckProblem(f"{path}.type", f"unknown stage type {tname!r}{suggest(tname, known)}"
                                        f" (types: {', '.join(known)})", _line(block, "type"), filename))
            ctx.earlier_outputs[name] = ()
            continue
        params = _validate_block(block, cls.params, path, ctx, problems, filename, skip=("type",))
        if len(params) == len(cls.params):
            for key, msg in cls.check(params):
                problems.append(DeckProblem(f"{path}.{key}" if key else path, msg,
                                            _line(block, key) if key else line, filename))
        ctx.earlier_outputs[name] = tuple(cls.declared_outputs(params))
        stage_plans.append(StagePlan(name, tname, params, line))

    sweep = None
    if "sweep" in tree and tree["sweep"] is not None:
        sweep = _validate_block(tree["sweep"], SWEEP_PARAMS, "sweep", ctx, problems, filename)
    if problems:
        raise DeckError(problems)
    plan = Plan(run=run, stages=stage_plans, deck_text=deck_text, deck_path=filename,
                overrides=list(overrides), sweep=sweep)
    if sweep:
        _expand_sweep(plan, tree, sweep, filename=filename, base_dir=base_dir, check_files=check_files)
    return plan


def _expand_sweep(plan: Plan, tree, sweep, **kw):
    over = sweep["over"]
    keys = list(over)
    problems = []
    values = []
    for k in keys:
        v = over[k]
        if not isinstance(v, list) or not v:
            problems.append(DeckProblem(f"sweep.over.{k}", "expected a non-empty list of values",
                                        _line(over, k), kw["filename"]))
        values.append(v if isinstance(v, list) else [])
    if sweep["mode"] == "zip" and len({len(v) for v in values}) > 1:
        problems.append(DeckProblem("sweep.over", "mode zip needs lists of equal length "
                                    f"(got {[len(v) for v in values]})", _line(tree["sweep"], "over"), kw["filename"]))
    if problems:
        raise DeckError(problems)
    combos = zip(*values) if sweep["mode"] == "zip" else itertools.product(*values)
    base = {k: v for k, v in tree.items() if k != "sweep"}
    for i, combo in enumerate(combos):
        case_tree = copy.deepcopy(base)
        case = dict(zip(keys, combo))
        for k, v in case.items():
            p = apply_override(case_tree, k.split("."), copy.deepcopy(v), source=f"sweep.over.{k}")
            if p:
                problems.append(DeckProblem(f"sweep.over.{k}", p.message, _line(over, k), kw["filename"]))
        if problems:
            continue
        try:
            sub = build_plan(case_tree, deck_text=plan.deck_text, default_name=plan.run["name"], **kw)
        except DeckError as e:
            problems.extend(DeckProblem(f"sweep case {i} {case}: {p.path}", p.message, p.line, p.file)
                            for p in e.problems)
            continue
        plan.cases.append(_strip_lines(case))
        plan.case_plans.append(sub)
    if problems:
        raise DeckError(problems)


def load_deck(path: str, overrides=(), check_files=True) -> Plan:
    """Read, override and validate a deck file (call on one rank; see ``comm.collective_call``)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise DeckError([DeckProblem("", f"cannot read deck: {e.strerror}", None, path)]) from None
    except UnicodeDecodeError:
        raise DeckError([DeckProblem("", "deck is not UTF-8 text", None, path)]) from None
    return load_deck_text(text, filename=path, base_dir=os.path.dirname(os.path.abspath(path)),
                          overrides=overrides, check_files=check_files)


def load_deck_text(text: str, filename="deck", base_dir=".", overrides=(), check_files=True) -> Plan:
    tree, duplicates = load_yaml(text, filename)
    problems = []
    for ov in overrides:
        keys, value = parse_override(ov)
        if not isinstance(tree, dict):
            break
        p = apply_override(tree, keys, value)
        if p:
            problems.append(p)
    if problems:
        raise DeckError(problems)
    default_name = os.path.splitext(os.path.basename(filename))[0] or "run"
    return build_plan(tree, filename=filename, base_dir=base_dir, deck_text=text, overrides=list(overrides),
                      check_files=check_files, duplicates=duplicates, default_name=default_name)


def describe_type(name: str) -> str:
    cls = get_stage_type(name)
    if cls is None:
        raise DeckError([DeckProblem("describe", f"unknown stage type '{name}'{suggest(name, stage_types())}")])
    lines = [f"{name}: {(cls.__doc__ or '').strip()}", "", "parameters:"]
    for key, p in cls.params.items():
        default = "required" if p.required else repr(p.default)
        extra = "; ".join(x for x in (f"range {p.range_text()}" if p.range_text() else "",
                                      f"units {p.units}" if p.units else "") if x)
        lines.append(f"  {key:<24} {p.kind.name:<28} default {default}" + (f"; {extra}" if extra else ""))
        if p.doc:
            lines.append(f"  {'':<24} {p.doc}")
    lines += ["", "outputs:"]
    for key, o in cls.declared_outputs().items():
        lines.append(f"  {key:<24} [{o.units}] {o.doc}")
    return "\n".join(lines)
