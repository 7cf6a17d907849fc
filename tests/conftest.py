"""Shared fixtures. The suite runs serially and, for tests marked ``mpi``, under
``mpirun -n 2`` with the same bodies; rank 1 prints nothing unless it fails."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ELECTRODE = ROOT.parent / "shared" / "data" / "electrode.tiff"

import petsc4py  # noqa: E402

petsc4py.init([sys.argv[0]])
from mpi4py import MPI  # noqa: E402

RANK, SIZE = MPI.COMM_WORLD.rank, MPI.COMM_WORLD.size


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    if SIZE > 1 and RANK > 0:  # one report per run: rank 0's; other ranks speak only on failure
        reporter = config.pluginmanager.getplugin("terminalreporter")
        if reporter is not None:
            config.pluginmanager.unregister(reporter)


def pytest_runtest_logreport(report):
    if SIZE > 1 and RANK > 0 and report.failed:
        sys.stderr.write(f"[rank {RANK}] FAILED {report.nodeid} ({report.when})\n{report.longreprtext}\n")


@pytest.fixture
def comm():
    c = MPI.COMM_WORLD.Dup()
    yield c
    c.Free()


@pytest.fixture
def electrode_path():
    if not ELECTRODE.exists():
        pytest.skip(f"real electrode image not found at {ELECTRODE} (shared data absent)")
    return ELECTRODE


def clean_env():
    """Environment for a child mpirun/ionscale: no MPI singleton variables of this process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_COMM", "PMIX_", "OMPI_MCA_orte", "OMPI_MCA_ess"))}
    env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                "OMPI_MCA_rmaps_base_oversubscribe": "1", "PYTHONUNBUFFERED": "1"})
    return env


def run_cli(*args, np: int = 1, cwd=None, env_extra=None, timeout=300):
    """Run ``ionscale ARGS`` (under mpirun when np > 1); returns CompletedProcess."""
    exe = [sys.executable, "-m", "ionscale", *map(str, args)]
    if np > 1:
        exe = ["mpirun", "--oversubscribe", "-n", str(np), *exe]
    env = clean_env()
    env.update(env_extra or {})
    return subprocess.run(exe, capture_output=True, text=True, cwd=cwd or ROOT, env=env, timeout=timeout)


def pytest_collection_modifyitems(config, items):
    if MPI.COMM_WORLD.size > 1:
        # under mpirun only the tests written for several ranks run
        keep = [it for it in items if it.get_closest_marker("mpi")]
        config.hook.pytest_deselected(items=[it for it in items if it not in keep])
        items[:] = keep
