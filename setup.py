"""ionscale: multiscale electrochemistry on MPI/PETSc with machine learning.

One import namespace: ``ionscale`` is ``framework/``, ``ionscale.kernels`` is
``kernels/`` and ``ionscale.couplers`` is ``couplers/``. No top-level
``kernels`` or ``framework`` package is installed (other libraries own them).
"""
from pathlib import Path

from setuptools import setup


def _packages(root: str, namespace: str):
    """Map every package folder under *root* to *namespace* (package_dir style)."""
    here = Path(__file__).parent
    found = {}
    for init in sorted((here / root).rglob("__init__.py")):
        rel = init.parent.relative_to(here / root)
        name = ".".join((namespace, *rel.parts)) if rel.parts else namespace
        found[name] = str(init.parent.relative_to(here)).replace("\\", "/")
    return found


package_dir = {}
package_dir.update(_packages("framework", "ionscale"))
package_dir.update(_packages("kernels", "ionscale.kernels"))
package_dir.update(_packages("couplers", "ionscale.couplers"))

setup(
    name="ionscale",
    version="0.1.0",
    description="Multiscale electrochemistry: physics solvers and machine learning on MPI/PETSc",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8")
    if (Path(__file__).parent / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=sorted(package_dir),
    package_dir=package_dir,
    package_data={"ionscale": ["data/*", "data/**/*"], "ionscale.kernels.cell": ["parameters/*.json", "parameters/bpx/*.json"]},
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "mpi4py>=3.1",
        "petsc4py>=3.18",
        "numba>=0.58",
        "h5py>=3.8",
        "torch>=2.0",
        "pyyaml>=6",
        "tifffile>=2023.1",
        "tqdm>=4.60",
        "scikit-image>=0.21",
        "matplotlib>=3.7",
    ],
    extras_require={
        "dev": ["pytest>=7", "hypothesis>=6", "pytest-timeout>=2"],
        "atomistic": ["ase>=3.22"],
        # Battery Parameter eXchange files as cell-model parameter sets (schema validation)
        "bpx": ["bpx>=1.1"],
        # reference implementation the cell-model tests compare against (not a runtime dependency)
        "validation": ["pybamm", "bpx>=1.1"],
        # peers measured by scripts/bench_*.py (never imported by ionscale itself)
        "bench": ["taufactor", "porespy", "pyamg", "pybamm", "icet", "torchani"],
        # optional reference engine for layered-oxide cathodes (pretrained weights ship in the wheel)
        "cathode": ["chgnet"],
    },
    entry_points={"console_scripts": ["ionscale=ionscale.cli:main"]},
)
