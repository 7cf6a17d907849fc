"""Atomistic kernels: learned interatomic potentials (Behler-Parrinello / ANI style,
``neighbors``, ``features``, ``model``, ``training``, ``sampling``, ``md``) and lattice
Monte Carlo. Kept free of imports so each sub-module loads only what it needs."""
