"""Building blocks of `tropd bench` (tropd/bench.py runs them and writes results/bench/).

- common   : machine description, peak-memory probe, interleaved timing with medians
- memory   : peak memory of the per-token loss path, chunked (the harness) vs full-vocabulary
- step     : one harness training step vs the same raw operations done directly
- rollout  : the HF backend's sampling loop vs `model.generate`, with a profile of the loop
- evalspeed: grading throughput of the evaluation code (code checks/s, math items/s)
"""
