"""Training fingerprints: does a change of the code leave training bit for bit the same?

    python scripts/fingerprint.py OUT.json [--config configs/tiny-ci.yaml] [--steps 8] [--methods a,b]

Trains every method preset (configs/methods/*.yaml) for a few steps on a prepared profile (tiny-ci by
default: `tropd prepare --config configs/tiny-ci.yaml` first) and writes, per preset, the SHA-256 of
its metrics lines without the timings (`time_*`, `tokens_per_s`) and of its final student weights.
Run it before and after a refactoring and compare the two files: equal hashes mean the same losses,
gradients, rollouts and weights at every step, so every table made from such runs is unchanged.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fingerprint(run: Path) -> dict:
    from safetensors.torch import load_file

    lines = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        lines.append({k: v for k, v in sorted(m.items()) if not k.startswith("time_") and k != "tokens_per_s"})
    weights = load_file(str(run / "student" / "model.safetensors"))
    h = hashlib.sha256()
    for k in sorted(weights):
        h.update(k.encode())
        h.update(weights[k].float().numpy().tobytes())
    return {"metrics": hashlib.sha256(json.dumps(lines).encode()).hexdigest(), "weights": h.hexdigest(),
            "steps": len(lines), "last": lines[-1]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--config", default="configs/tiny-ci.yaml")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--methods", default="")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from tropd.config import load_config
    from tropd.train import train

    presets = a.methods.split(",") if a.methods else sorted(p.stem for p in (REPO / "configs" / "methods").glob("*.yaml"))
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in presets:
            cfg = load_config(REPO / a.config, method=name, overrides=[f"train.steps={a.steps}", "train.checkpoint_every=3"])
            train(cfg, Path(tmp) / name, log=lambda m: None)
            res[name] = fingerprint(Path(tmp) / name)
            print(f"{name:20s} {res[name]['metrics'][:12]} {res[name]['weights'][:12]}", flush=True)
    Path(a.out).write_text(json.dumps(res, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
