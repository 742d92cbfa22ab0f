"""Adding a method takes one module and one preset YAML: a toy method with a behaviour policy of its
own, written to a temporary module (as a newcomer would write baselines/<name>.py) and a preset YAML
outside configs/, trains through the unchanged core. baselines/README.md walks through the same code."""
from __future__ import annotations

import importlib
import json
import sys

from tropd.config import load_config
from tropd.train import train

TOY = '''
from dataclasses import dataclass

from tropd.methods.opd import k1_reward, pg_loss
from tropd.registry import MethodOutput, StepContext, TokenStats, register
from tropd.rollout.policies import Policy, Request, plain


@dataclass(frozen=True)
class ShortStudent(Policy):
    share: float

    def sample(self, r: Request):
        n = max(1, int(r.max_new * self.share))
        out = r.sample("student", max_new=[n] * len(r.prompts))
        return plain(out, r.prompts, from_teacher=False), {"short_new": n}


@dataclass
class ShortOPDParams:
    share: float = 0.5


@register("toy_short_opd", params=ShortOPDParams, description="OPD on short student rollouts",
          reference="tests", behaviour=lambda p: ShortStudent(p.share))
def short_opd(s: TokenStats, p: ShortOPDParams, ctx: StepContext) -> MethodOutput:
    reward_BT = k1_reward(s)
    return MethodOutput(loss_BT=pg_loss(s, reward_BT), metrics={"reward": reward_BT})
'''


def test_a_new_method_is_one_module_and_one_yaml(tiny_profile, tmp_path, monkeypatch):
    from tropd.registry import _REGISTRY

    (tmp_path / "toy_short_opd.py").write_text(TOY)
    preset = tmp_path / "toy_short_opd.yaml"
    preset.write_text("method: {name: toy_short_opd, params: {share: 0.25}}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("toy_short_opd")
    try:
        cfg = load_config(tiny_profile, method=str(preset), overrides=["train.steps=2", "train.checkpoint_every=100"])
        summary = train(cfg, tmp_path / "run", log=lambda m: None)
        lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
        n = int(cfg.train.max_new_tokens * 0.25)
        assert summary["status"] == "finished" and len(lines) == 2
        assert all(m["short_new"] == n and 0 < m["response_len"] <= n for m in lines)  # its own policy wrote
        assert all("reward" in m and "rkl" in m for m in lines)  # its loss's metrics and the core's
    finally:
        _REGISTRY.pop("toy_short_opd", None)
        sys.modules.pop("toy_short_opd", None)


def test_every_module_in_baselines_is_registered():
    """A new module in baselines/ needs no import line elsewhere: the package imports every module."""
    import pkgutil

    import baselines
    from tropd.catalog import all_methods

    modules = {m.name for m in pkgutil.iter_modules(baselines.__path__)}
    registered = {m.fn.__module__.split(".")[-1] for m in all_methods().values()
                  if m.fn.__module__.startswith("baselines.")}
    assert modules == registered
