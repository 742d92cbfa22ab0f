"""TrOPD's own methods (the K1 OPD core it builds on and TrOPD with its ablations).

Importing this package registers them; competing methods live in the top-level `baselines` package.
`terms` holds the per-token loss terms both share; `guidance` the prefix schedule the rollout reads.
"""
from tropd.methods import opd, tropd  # noqa: F401
