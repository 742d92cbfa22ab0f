"""Competing methods, one small module each, registered by name into tropd's method registry.

Importing this package registers them all (tropd.registry imports it by name). Each module opens with
its math: paper, equation, and every deviation. README.md here tabulates method -> paper -> equation
-> preset -> status.
"""
from baselines import entropy_opd, eopd, erpd, gkd, jsd, reopold, seqkd, topk_fkl, trb  # noqa: F401
