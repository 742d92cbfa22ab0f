"""TrOPD's own methods (the K1 OPD core it builds on and TrOPD with its ablations).

Importing this package registers them; competing methods live in the top-level `baselines` package.
"""
from tropd.methods import opd  # noqa: F401
