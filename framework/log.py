"""Rank-0 logging with timestamps; other ranks only report warnings and errors."""
from __future__ import annotations

import logging
import sys

_CONFIGURED = False


def setup_logging(comm=None, verbose: int = 0):
    global _CONFIGURED
    rank = comm.rank if comm is not None else 0
    logger = logging.getLogger("ionscale")
    if _CONFIGURED:
        return logger
    _CONFIGURED = True
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(asctime)s %(levelname).1s %(message)s" if rank == 0 else f"%(asctime)s %(levelname).1s [rank {rank}] %(message)s"
    handler.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.propagate = False
    if rank == 0:
        logger.setLevel(logging.DEBUG if verbose > 0 else logging.INFO)
    else:
        logger.setLevel(logging.WARNING)
    return logger


def progress(iterable=None, *, total=None, desc="", comm=None, **kw):
    """A tqdm progress bar on rank 0 only (and only on a terminal or when asked)."""
    from tqdm.auto import tqdm

    disable = comm is not None and comm.rank != 0
    return tqdm(iterable, total=total, desc=desc, disable=disable or None, leave=False, **kw)
