"""Atomic, checksummed training checkpoints.

A checkpoint is a folder `checkpoints/step_000050/` holding the student weights (safetensors), the
optimizer and scheduler state, the data position, RNG states and `manifest.json` with a sha256 of
every file. It is written into a hidden temp folder and renamed into place, and the manifest is
verified on load: a checkpoint cut off mid-write (preemption, full disk) is never used; the
previous one is. Resuming therefore reproduces an uninterrupted run bit for bit (all sampling
randomness is derived from (seed, step, ...), and the global RNG state is restored as well).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tropd.infra.io import reraise_io

MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(tmp: Path, step: int, weights: dict, optim_state: dict, scheduler, extra: dict) -> None:
    state = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
    # Tied weights share storage; safetensors refuses duplicates, so keep one name per storage.
    seen: dict[int, str] = {}
    tied = {}
    for k in list(state):
        ptr = state[k].untyped_storage().data_ptr()
        if ptr in seen:
            tied[k] = seen[ptr]
            del state[k]
        else:
            seen[ptr] = k
    try:
        save_file(state, tmp / "model.safetensors")
    except Exception as e:  # safetensors wraps I/O errors (ENOSPC, EACCES) in its own type
        reraise_io(e)
    torch.save({"optimizer": optim_state, "scheduler": scheduler.state_dict()}, tmp / "optim.pt")
    rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "tied": tied, **extra}, indent=2))
    from tropd.infra.faults import fault_point

    fault_point("checkpoint-write", step)  # a kill here leaves only the hidden temp folder
    files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
    (tmp / MANIFEST).write_text(json.dumps({"step": step, "sha256": files}, indent=2))
    for p in tmp.iterdir():
        with open(p, "rb") as f:
            os.fsync(f.fileno())


def save(ckpt_dir: Path, step: int, weights: dict, optim_state: dict, scheduler, extra: dict,
         keep: int) -> Path:
    """Write checkpoint `step` (the student's state dict, the optimizer's) atomically; keep only the
    newest `keep`. The state dicts are full ones (World.student_state and optimizer_state gather FSDP shards)."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"step_{step:06d}"
    tmp = ckpt_dir / f".tmp_step_{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write(tmp, step, weights, optim_state, scheduler, extra)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # never leave a half-written checkpoint behind
        raise
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _fsync_dir(ckpt_dir)
    for old in list_valid(ckpt_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def verify(path: Path) -> bool:
    """True if the manifest exists and every file matches its checksum."""
    man = path / MANIFEST
    try:
        files = json.loads(man.read_text())["sha256"]
        return all((path / n).is_file() and _sha256(path / n) == h for n, h in files.items())
    except (OSError, ValueError, KeyError):
        return False


def list_valid(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (only names; checksums are checked by `latest`)."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.glob("step_*") if (p / MANIFEST).is_file())


def latest(ckpt_dir: Path, log=print) -> Path | None:
    """Newest checkpoint whose checksums verify; corrupt ones are reported and skipped."""
    for path in reversed(list_valid(ckpt_dir)):
        if verify(path):
            return path
        log(f"checkpoint {path} failed its checksum; using an older one")
    return None


def load(path: Path, model, optimizer, scheduler, put=None) -> dict:
    """Restore model, optimizer, scheduler and RNG states; returns state.json.

    `put(weights, optimizer_state)` loads the two state dicts (default: `load_state_dict` on each;
    an FSDP student gets tropd.infra.fsdp.load_states)."""
    state = json.loads((path / "state.json").read_text())
    weights = load_file(path / "model.safetensors")
    for name, src in state.get("tied", {}).items():
        weights[name] = weights[src]
    opt = torch.load(path / "optim.pt", weights_only=False)
    if put is None:
        model.load_state_dict(weights)
        optimizer.load_state_dict(opt["optimizer"])
    else:
        put(weights, opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    rng = torch.load(path / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return state
