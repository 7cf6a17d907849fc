"""Numerical kernels by domain: plain functions and classes on numpy / PETSc /
torch objects that take a communicator. Usable without a deck."""
