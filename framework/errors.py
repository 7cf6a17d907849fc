"""Typed exceptions. Each docstring lists the likely causes a user should check.

``collective`` errors are raised identically on every rank of the stage's
communicator (for example after a collective convergence test), so all ranks can
unwind together. Any other exception inside collective code is rank-local and
the runner aborts the communicator instead of letting the other ranks hang.
"""
from __future__ import annotations

from dataclasses import dataclass


class IonscaleError(Exception):
    """Base class of every error ionscale raises on purpose."""

    exit_code = 1
    collective = False


@dataclass(frozen=True)
class DeckProblem:
    """One problem in a deck: where (YAML path and line) and what."""

    path: str
    message: str
    line: int | None = None
    file: str | None = None

    def __str__(self) -> str:
        where = self.file or "deck"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class DeckError(IonscaleError):
    """The deck is invalid; every problem found is listed, one per line.

    Likely causes: a misspelt key (see the "did you mean" hint), a value of the
    wrong type or outside its range, a missing input file, a reference
    ``stage.output`` to a stage that is not defined earlier, a duplicated stage
    name, or a ``--set`` override naming a key that does not exist.
    """

    exit_code = 2
    collective = True

    def __init__(self, problems):
        if isinstance(problems, (str, DeckProblem)):
            problems = [problems]
        self.problems = [p if isinstance(p, DeckProblem) else DeckProblem("", str(p)) for p in problems]
        super().__init__("\n".join(str(p) for p in self.problems))


class InputDataError(IonscaleError):
    """An input data file (image, dataset, parameter file) cannot be used.

    Likely causes: the path is wrong, the file is truncated or of another
    format than its extension says, the HDF5 dataset name is wrong, or the array
    has the wrong dimension or labels.
    """

    exit_code = 2
    collective = True


class SolverDivergedError(IonscaleError):
    """A PETSc solver did not converge.

    Likely causes: a tolerance tighter than the arithmetic allows, a singular
    operator (for example a phase region with no Dirichlet boundary), an
    unsuitable preconditioner chosen through ``petsc:``, or a time step / cut-off
    that drives a state variable out of its physical range.
    """

    exit_code = 3
    collective = True

    def __init__(self, message, reason=None, iterations=None, partial=None):
        super().__init__(message)
        self.reason = reason
        self.iterations = iterations
        self.partial = partial


class CommunicatorError(IonscaleError):
    """The MPI layout cannot run the request.

    Likely causes: ``sweep.ranks_per_case`` does not divide the number of ranks,
    or more ranks than cells in a distributed direction.
    """

    exit_code = 2
    collective = True


class ResultsError(IonscaleError):
    """A results file cannot be read or written.

    Likely causes: the output folder is not writable, the disk is full, or a
    ``--restart`` points at a file written by an incompatible version.
    """

    exit_code = 1
    collective = True
