"""tropd: a reproducibility harness for Trust Region On-Policy Distillation (arXiv 2606.01249)."""

__version__ = "0.1.0"
