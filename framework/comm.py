"""Communicator helpers: rank-0 work broadcast as (error, result), ensembles on
split communicators, and abort-instead-of-hang for rank-local failures."""
from __future__ import annotations

import contextlib
import logging
import sys
import traceback

from .errors import CommunicatorError, IonscaleError

log = logging.getLogger("ionscale")


def mpi():
    from mpi4py import MPI
    return MPI


def world():
    return mpi().COMM_WORLD


def collective_call(fn, comm, *args, root=0, **kwargs):
    """Run ``fn`` on ``root`` only and broadcast ``(error, result)``; every rank
    returns the result or raises the same error (so all ranks fail together)."""
    error = result = None
    if comm.rank == root:
        try:
            result = fn(*args, **kwargs)
        except IonscaleError as e:
            error = e
        except Exception as e:  # unexpected: still fail together, keeping the traceback text
            error = RuntimeError(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    if comm.size > 1:
        error, result = comm.bcast((error, result), root=root)
    if error is not None:
        raise error
    return result


def split_ensemble(comm, ranks_per_case: int):
    """Split ``comm`` into groups of ``ranks_per_case`` ranks (Firedrake Ensemble style).

    Returns ``(case_comm, group_index, n_groups)``; the size is checked up front."""
    if ranks_per_case < 1 or comm.size % ranks_per_case:
        raise CommunicatorError(f"sweep.ranks_per_case={ranks_per_case} does not divide the {comm.size} "
                                f"MPI ranks; use a divisor of {comm.size} or change mpirun -n")
    group = comm.rank // ranks_per_case
    sub = comm.Split(color=group, key=comm.rank)
    return sub, group, comm.size // ranks_per_case


@contextlib.contextmanager
def abort_on_rank_local_error(comm, what: str):
    """Inside collective code: collective ``IonscaleError``\\ s propagate (all ranks
    raise them together); anything else is rank-local and would leave the other
    ranks waiting in a collective, so it is reported and the job aborted."""
    try:
        yield
    except IonscaleError as e:
        if e.collective or comm.size == 1:
            raise
        _abort(comm, what, e)
    except KeyboardInterrupt:
        raise
    except Exception as e:
        if comm.size == 1:
            raise
        _abort(comm, what, e)


def _abort(comm, what, exc):
    sys.stderr.write(f"ionscale: rank {comm.rank} of {comm.size}: {what} failed: {type(exc).__name__}: {exc}\n")
    traceback.print_exc(file=sys.stderr)
    sys.stderr.write("ionscale: aborting all ranks (a rank-local failure inside collective work)\n")
    sys.stderr.flush()
    comm.Abort(4)


def allreduce_sum(comm, value):
    MPI = mpi()
    return comm.allreduce(value, op=MPI.SUM)
