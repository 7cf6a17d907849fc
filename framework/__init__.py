"""ionscale: multiscale electrochemistry (structure -> property -> performance)
on MPI/PETSc with machine learning.

``ionscale`` is the framework (decks, runs, communicators, results, CLI);
``ionscale.kernels`` holds the numerical kernels and ``ionscale.couplers`` the
surrogates and force fields served to solvers.
"""
from .errors import (CommunicatorError, DeckError, DeckProblem, InputDataError, IonscaleError, ResultsError,
                     SolverDivergedError)
from .info import __version__
from .params import Labels, ListOf, Mapping, FilePath, OneOf, Output, Param, Ref, Reference
from .stage import Stage, StageInputs, register, stage_types

__all__ = ["__version__", "Stage", "StageInputs", "register", "stage_types", "Param", "Output", "Labels",
           "ListOf", "Mapping", "FilePath", "OneOf", "Ref", "Reference", "IonscaleError", "DeckError",
           "DeckProblem", "InputDataError", "SolverDivergedError", "CommunicatorError", "ResultsError"]
