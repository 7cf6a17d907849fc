"""Run orchestration: execute a validated ``Plan`` stage by stage on a
communicator, write results after every stage, reuse finished stages on restart,
and run sweeps as ensembles on split communicators."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import time
from datetime import datetime, timezone

from .comm import abort_on_rank_local_error, collective_call, split_ensemble
from .deck import Plan, StagePlan
from .errors import DeckError, IonscaleError
from .info import __version__, git_commit, versions
from .params import Reference, suggest
from .results import ResultsFile, StageRecord, read_records, to_json
from .stage import StageInputs

log = logging.getLogger("ionscale")


def _refs(obj):
    if isinstance(obj, Reference):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _refs(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _refs(v)


def _resolve(obj, outputs):
    if isinstance(obj, Reference):
        value = outputs[obj.stage][obj.output]
        for depth, k in enumerate(obj.key):
            if not isinstance(value, dict) or k not in value:
                where = ".".join((obj.stage, obj.output) + tuple(obj.key[:depth]))
                have = f"its entries: {', '.join(map(str, value))}" if isinstance(value, dict) else "it is not a mapping"
                raise DeckError(f"reference '{obj}': '{where}' has no entry '{k}' ({have}){suggest(k, value) if isinstance(value, dict) else ''}")
            value = value[k]
        return value
    if isinstance(obj, dict):
        return {k: _resolve(v, outputs) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v, outputs) for v in obj]
    return obj


def _params_for_hash(obj, hashes):
    if isinstance(obj, Reference):
        return ".".join((f"<{obj.stage}:{hashes[obj.stage]}>", obj.output) + tuple(obj.key))
    if isinstance(obj, dict):
        return {k: _params_for_hash(v, hashes) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_params_for_hash(v, hashes) for v in obj]
    return obj


def _file_stamp(obj):
    """Size and mtime of input files so an edited file invalidates the stage."""
    stamps = {}
    if isinstance(obj, str) and os.path.isfile(obj.split("::")[0]):
        st = os.stat(obj.split("::")[0])
        stamps[obj] = (st.st_size, int(st.st_mtime))
    elif isinstance(obj, dict):
        for v in obj.values():
            stamps.update(_file_stamp(v))
    elif isinstance(obj, list):
        for v in obj:
            stamps.update(_file_stamp(v))
    return stamps


def stage_hash(sp: StagePlan, hashes: dict, seed: int) -> str:
    payload = {"type": sp.type, "params": _params_for_hash(sp.params, hashes), "seed": seed,
               "files": _file_stamp(sp.params), "version": __version__.rsplit(".", 1)[0]}
    return hashlib.sha256(to_json(payload).encode()).hexdigest()[:24]


def stage_seed(run_seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{run_seed}:{name}".encode()).digest()[:4], "little")


def _params_record(params):
    return json.loads(to_json(_params_for_hash(params, _NoHash())))


class _NoHash(dict):
    def __getitem__(self, key):
        return "ref"


def provenance(plan: Plan, comm) -> dict:
    return {"deck_text": plan.deck_text, "deck_path": os.path.abspath(plan.deck_path) if plan.deck_path else "",
            "overrides": to_json(plan.overrides), "run": to_json(plan.run), "versions": to_json(versions()),
            "git_commit": git_commit(), "ranks": comm.size, "hostname": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "ionscale_version": __version__}


class Runner:
    """Executes the stages of a plan on ``comm`` (every rank calls ``run``)."""

    def __init__(self, plan: Plan, comm, *, restart: bool = False, results_path: str | None = None):
        self.plan = plan
        self.comm = comm
        self.restart = restart
        self.results_path = results_path or plan.results_path
        self.outputs: dict[str, dict] = {}
        self.records: dict[str, StageRecord] = {}

    def run(self) -> dict[str, dict]:
        if self.plan.case_plans:
            return self._run_sweep()
        return self._run_stages(self.plan, self.comm, self.results_path)

    # -- one plan ----------------------------------------------------------------
    def _run_stages(self, plan: Plan, comm, path: str, label: str = "") -> dict[str, dict]:
        previous = {}
        if self.restart:
            previous = collective_call(read_records, comm, path)
        results = ResultsFile(path, provenance(plan, comm)) if comm.rank == 0 else None
        outputs: dict[str, dict] = {}
        hashes: dict[str, str] = {}
        seed = plan.run["seed"]
        for sp in plan.stages:
            h = stage_hash(sp, hashes, seed)
            hashes[sp.name] = h
            old = previous.get(sp.name)
            if old is not None and old.hash == h and old.type == sp.type:
                log.info("%sstage %s (%s): unchanged, reusing the result of %s", label, sp.name, sp.type, path)
                record = old
                record.reused = True
            else:
                record = self._execute(sp, comm, outputs, h, seed, plan, label, path)
            outputs[sp.name] = record.outputs
            self.records[label + sp.name] = record
            if comm.rank == 0:
                results.add(record)
            collective_call(results.write if results else (lambda: None), comm)
            if os.environ.get("IONSCALE_KILL_AFTER_STAGE") == sp.name:
                # fault injection for restart tests: a real SIGKILL, nothing flushed after this point
                os.kill(os.getpid(), signal.SIGKILL)
        self.outputs = outputs
        return outputs

    def _execute(self, sp: StagePlan, comm, outputs, h, seed, plan, label, path) -> StageRecord:
        cls = sp.cls
        stage = cls(sp.name)
        stage.seed = stage_seed(seed, sp.name)
        stage.output_dir = plan.run["output"]
        stage.run_name = plan.run["name"]
        stage.results_path = path  # this run's (or sweep case's) results file
        values, siblings = {}, {}
        for key, value in sp.params.items():
            refs = list(_refs(value))
            if refs:
                values[key] = _resolve(value, outputs)
                siblings[key] = outputs[refs[0].stage]
        params = _resolve(sp.params, outputs)
        inputs = StageInputs(values, siblings)
        log.info("%sstage %s (%s) on %d rank%s", label, sp.name, sp.type, comm.size, "s" if comm.size > 1 else "")
        t0 = time.perf_counter()
        with abort_on_rank_local_error(comm, f"stage '{sp.name}' ({sp.type})"):
            result = stage.run(comm, inputs, params)
            declared = cls.declared_outputs(sp.params)
            missing = [k for k in declared if k not in result]
            if missing:
                raise RuntimeError(f"stage type '{sp.type}' did not return outputs {missing}")
        wall = comm.allreduce(time.perf_counter() - t0, op=_max_op())
        log.info("%sstage %s done in %.2f s", label, sp.name, wall)
        units = {k: o.units for k, o in declared.items()}
        docs = {k: o.doc for k, o in declared.items()}
        return StageRecord(sp.name, sp.type, h, _params_record(sp.params), result, units, docs,
                           wall_time_s=wall, ranks=comm.size)

    # -- ensembles -----------------------------------------------------------------
    def _run_sweep(self) -> dict[str, dict]:
        plan, comm = self.plan, self.comm
        sub, group, ngroups = split_ensemble(comm, plan.sweep["ranks_per_case"])
        base, _ = os.path.splitext(self.results_path)
        case_dir = base + ".cases"
        n = len(plan.case_plans)
        log.info("sweep: %d cases on %d group%s of %d rank%s", n, ngroups, "s" if ngroups > 1 else "",
                 sub.size, "s" if sub.size > 1 else "")
        try:
            for i in range(group, n, ngroups):
                path = os.path.join(case_dir, f"case_{i:04d}.h5")
                self._run_stages(plan.case_plans[i], sub, path, label=f"[case {i}] ")
            lead = sub.rank == 0
        finally:
            sub.Free()
        # rank 0 gets every case's scalar outputs for the summary (fields stay in the case files)
        mine = {k: _scalars_only(r) for k, r in self.records.items()} if lead else {}
        parts = comm.gather(mine, root=0)
        if comm.rank == 0:
            merged = {}
            for part in parts:
                merged.update(part)
            self.records = dict(sorted(merged.items(), key=lambda kv: _case_order(kv[0])))
        collective_call(self._write_sweep_index, comm, case_dir)
        return {}

    def _write_sweep_index(self, case_dir):
        import h5py

        from .results import atomic_write

        plan = self.plan
        keys = list(plan.sweep["over"])

        def fill(f):
            prov = f.create_group("provenance")
            for k, v in provenance(plan, self.comm).items():
                prov.attrs[k] = v if isinstance(v, (str, int, float)) else to_json(v)
            sw = f.create_group("sweep")
            sw.attrs["keys"] = to_json(keys)
            sw.attrs["cases"] = to_json(plan.cases)
            sw.attrs["ranks_per_case"] = plan.sweep["ranks_per_case"]
            for i in range(len(plan.case_plans)):
                rel = os.path.join(os.path.basename(case_dir), f"case_{i:04d}.h5")
                f[f"case_{i:04d}"] = h5py.ExternalLink(rel, "/")

        atomic_write(self.results_path, fill)


def _scalars_only(record: StageRecord) -> StageRecord:
    import numbers
    outs = {k: v for k, v in record.outputs.items() if isinstance(v, numbers.Number)}
    return StageRecord(record.name, record.type, record.hash, record.params, outs, record.units,
                       wall_time_s=record.wall_time_s, ranks=record.ranks, reused=record.reused)


def _case_order(label: str):
    if label.startswith("[case "):
        return (int(label[6:label.index("]")]), label)
    return (-1, label)


def _max_op():
    from mpi4py import MPI
    return MPI.MAX


def run_plan(plan: Plan, comm, *, restart=False, results_path=None) -> Runner:
    runner = Runner(plan, comm, restart=restart, results_path=results_path)
    runner.run()
    return runner


__all__ = ["Runner", "run_plan", "stage_hash", "IonscaleError"]
