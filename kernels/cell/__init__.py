"""Cell-scale porous-electrode models (DFN/P2D) on PETSc TS."""
