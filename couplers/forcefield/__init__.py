"""ASE calculator serving an ionscale learned potential (energy, forces, stress)."""
from .calculator import IonscaleCalculator, evaluate_batch

__all__ = ["IonscaleCalculator", "evaluate_batch"]
