"""Fully sharded data parallelism (FSDP2) for the student, when `accelerate launch` asks for it.

`accelerate launch --config_file configs/accelerate/fsdp.yaml` sets ACCELERATE_USE_FSDP=true (and
FSDP_* variables from the file's fsdp_config); `tropd train` then shards the student with torch's
`fully_shard` itself instead of letting `accelerator.prepare` do it (tropd.infra.dist says why nothing is
prepared). Everything else is the data parallelism of tropd.infra.dist: each process takes 1/N of a
step's prompts, seeds come from global positions, the loss is normalised by the global count. What
FSDP adds: each process keeps 1/N of the student's parameters, gradients and optimizer state, and
the gradients are summed by FSDP's reduce-scatter (divide factor 1: a sum, as tropd.infra.dist's
all-reduce is) instead of one all-reduce at the end.

Layout: every decoder layer (the classes in FSDP_TRANSFORMER_CLS_TO_WRAP, else the model's
`_no_split_modules`) is a shard unit, and a thin `Root` module around the whole model is the root
unit holding the embedding, the final norm and the LM head (tied or not). Every forward enters
through `Root`: a decode step calls it like the model itself, and the chunked training forward
(tropd.scoring.student_forward, which calls the decoder and the LM head weight directly) runs
*inside* it as `root(..., fn=student_forward)`, so the root's parameters are gathered around it and
its gradients are reduced after backward (the root keeps its parameters gathered between forward
and backward, which the checkpointed head chunks need).

Collectives need every process to make the same calls: a student rollout gathers the whole
student once (`Root.gathered`, entered by every process once a step), so that the decode steps
themselves hold no collective and each process decodes for as long as its own rows need; the
step's prompts must split evenly (equal micro-batch counts, hence equal training forwards); checkpoints and the final save gather full state dicts on
every process before the main process writes them, in the same format as a one-process run's (a
run can resume under another process count or without FSDP). The teacher is not sharded: each
process holds it whole (frozen, no gradients or optimizer state). Not supported, each refused with
one line: FSDP1 (FSDP_VERSION=1), parameter offload, rank-0-only loading
(fsdp_cpu_ram_efficient_loading), ERPD's two stages.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch
from torch import nn

from tropd.errors import UserError


def requested() -> bool:
    """True when the launcher asked for FSDP (accelerate launch with an FSDP config file)."""
    return _on("ACCELERATE_USE_FSDP")


def _on(var: str) -> bool:
    return os.environ.get(var, "false").lower() == "true"


def check_environment() -> None:
    """One-line errors for launcher settings tropd's FSDP path does not do (before accelerate
    reads them)."""
    if not requested():
        return
    if os.environ.get("FSDP_VERSION", "2") != "2":
        raise UserError(f"FSDP_VERSION={os.environ['FSDP_VERSION']}: tropd shards with FSDP2 only "
                        "(fsdp_version: 2 in configs/accelerate/fsdp.yaml)")
    if _on("FSDP_OFFLOAD_PARAMS"):
        raise UserError("fsdp_offload_params: true is not supported by tropd train; set it to false")
    # With this set, transformers loads real weights on local rank 0 only (meta tensors elsewhere)
    # and relies on `accelerator.prepare` to broadcast them, which tropd does not call.
    if _on("FSDP_CPU_RAM_EFFICIENT_LOADING"):
        raise UserError("fsdp_cpu_ram_efficient_loading: true is not supported by tropd train (every "
                        "process loads the weights itself); set it to false")


def check_request(world_size: int, prompts_per_step: int, two_stage: bool) -> None:
    """One-line errors for runs tropd's FSDP path does not do, before any model is loaded."""
    if two_stage:
        raise UserError("ERPD's two stages (method.params.stage1_frac) are not supported under FSDP; "
                        "use configs/accelerate/ddp.yaml")
    if prompts_per_step % world_size:
        raise UserError(f"train.prompts_per_step={prompts_per_step} does not split evenly over {world_size} "
                        "FSDP processes (every process must run the same number of forward passes)")


class Root(nn.Module):
    """FSDP root around a causal LM: `root(**kw)` is `lm(**kw)`; `root(*a, fn=f)` is `f(lm, *a)`."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, *args, fn=None, **kw):
        return self.lm(*args, **kw) if fn is None else fn(self.lm, *args, **kw)

    @contextmanager
    def gathered(self):
        """The whole student unsharded for a rollout (no gradients): one all-gather per unit instead
        of one per unit per decoded token; resharded on exit, so training holds only the shards."""
        from torch.distributed.fsdp import FSDPModule

        units = [m for m in self.modules() if isinstance(m, FSDPModule)]
        keep = _reshard_after_forward()
        for m in units:
            m.set_reshard_after_forward(False, recurse=False)
            m.unshard()
        try:
            yield
        finally:
            for m in units:
                m.set_reshard_after_forward(keep and m is not self, recurse=False)
                m.reshard()


def _reshard_after_forward() -> bool:
    """fsdp_reshard_after_forward (default true: free a layer's gathered weights after its forward)."""
    return os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() not in ("false", "no_shard")


def _layer_classes(model: nn.Module) -> set[str]:
    names = os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP", "")
    found = {n.strip() for n in names.split(",") if n.strip()} or set(getattr(model, "_no_split_modules", None) or [])
    if not found:
        raise UserError(f"{type(model).__name__} names no decoder-layer class (_no_split_modules); set "
                        "fsdp_transformer_layer_cls_to_wrap in the accelerate config")
    return found


def shard(model: nn.Module, device: torch.device) -> Root:
    """Shard `model` in place (its parameters become DTensor shards); returns the root to call."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    reshard = _reshard_after_forward()
    classes = _layer_classes(model)
    layers = [m for m in model.modules() if type(m).__name__ in classes]
    if not layers:
        raise UserError(f"no module of class {sorted(classes)} in {type(model).__name__} to shard")
    for layer in layers:
        fully_shard(layer, mesh=mesh, reshard_after_forward=reshard)
    root = fully_shard(Root(model), mesh=mesh)
    for m in [*layers, root]:
        m.set_gradient_divide_factor(1.0)  # a sum over processes: the loss is already globally normalised
        m.set_force_sum_reduction_for_comms(True)  # a plain SUM (gloo has no PREMUL_SUM; NCCL's is zero-copy)
    return root


def local_fraction(model: nn.Module) -> float:
    """Share of the student's parameters held by this process (1/N when sharded evenly)."""
    local = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in model.parameters())
    return local / max(sum(p.numel() for p in model.parameters()), 1)


def _local_bytes(t: torch.Tensor) -> int:
    t = t.to_local() if hasattr(t, "to_local") else t
    return t.numel() * t.element_size()


def state_mb(model: nn.Module, optimizer) -> float:
    """MiB of training state this process holds between steps: the student's parameters and the
    optimizer's state (AdamW: two moments); the gradients, present during a step, add one more
    parameter-sized share. Sharding divides all three by N."""
    params = sum(_local_bytes(p) for p in model.parameters())
    moments = sum(_local_bytes(v) for st in optimizer.state.values() for v in st.values()
                  if isinstance(v, torch.Tensor) and v.dim() > 0)
    return (params + moments) / 2**20


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The full (unsharded) state dict on the CPU, the same names as `model.state_dict()`.
    A collective: every process calls it; the main process gets the tensors, the others {}."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_options(cpu_offload=True))
    # Tied weights (a shared embedding and LM head) come back as two copies; make them one tensor
    # again, as in `model.state_dict()`, so that the checkpoint and save_pretrained store it once.
    first: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first and name in state and first[id(p)] in state:
            state[name] = state[first[id(p)]]
        first.setdefault(id(p), name)
    return state


def optimizer_state(model: nn.Module, optimizer) -> dict:
    """The full optimizer state, in `optimizer.state_dict()`'s own format (parameters by index in
    `model.parameters()` order), so that a one-process run can resume from it. A collective."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    by_name = get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))
    if not by_name:
        return {}
    index = {name: i for i, (name, _) in enumerate(model.named_parameters())}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in by_name["param_groups"]]
    return {"state": {index[n]: s for n, s in by_name["state"].items()}, "param_groups": groups}


def load_states(model: nn.Module, optimizer, weights: dict, optim: dict) -> None:
    """Put full state dicts (every process has read them) into the sharded model and optimizer."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    set_model_state_dict(model, weights, options=_options())
    names = [name for name, _ in model.named_parameters()]
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in optim["param_groups"]]
    by_name = {"state": {names[i]: s for i, s in optim["state"].items()}, "param_groups": groups}
    set_optimizer_state_dict(model, optimizer, by_name, options=_options())
