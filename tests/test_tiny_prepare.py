"""`tropd prepare` for the tiny profile, at toy size: every output written, formats right, models
loadable with one shared tokenizer whose template makes a code completion the function body, and
a second call does nothing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tropd.cli import main
from tropd.config import REPO_ROOT, ModelSpec, load_config
from tropd.infra.io import read_jsonl
from tropd.models import format_prompt, load_model, load_tokenizer

TINY = str(REPO_ROOT / "configs" / "tiny.yaml")


def _overrides(root: Path, **extra) -> list[str]:
    settings = {
        "paths.data": str(root / "data"), "paths.models": str(root / "models"),
        "prepare.n_train": 24, "prepare.n_test": 5, "prepare.teacher_hidden": 32,
        "prepare.student_hidden": 16, "prepare.teacher_steps": 3, "prepare.student_steps": 0,
        "prepare.sft_batch": 8, "prepare.num_threads": 1, "train.max_new_tokens": 8, **extra,
    }
    return [f"{k}={v}" for k, v in settings.items()]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny_prepare")
    assert main(["prepare", "--config", TINY, *_overrides(root)]) == 0
    return root


def _mtimes(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_prepare_writes_every_output(prepared):
    data, models = prepared / "data", prepared / "models"
    train = read_jsonl(data / "train.jsonl")
    assert len(train) == 3 * 24 and {r["domain"] for r in train} == {"math", "code", "instruct"}
    assert all(set(r) == {"id", "domain", "prompt", "reference"} for r in train)
    assert len({r["id"] for r in train}) == len(train)
    math, code, inst = (read_jsonl(data / d / "test.jsonl") for d in ("math", "code", "instruct"))
    assert len(math) == len(code) == len(inst) == 5
    assert "####" in math[0]["answer"] and code[0]["task_id"] == "TinyCode/0" and "kwargs" in inst[0]
    held_out = {r["question"] for r in math} | {r["prompt"] for r in code} | {r["prompt"] for r in inst}
    assert not {r["prompt"] for r in train} & held_out
    probe = json.loads((models / "probe.json").read_text())
    assert set(probe["accuracy"]) == {"math", "code", "instruct"}
    assert set(probe["teacher_logp"]) == {"teacher_samples", "student_samples"}
    assert not list(prepared.glob(".*tmp-*")), "temporary folders left behind"


def test_second_prepare_does_nothing(prepared, capsys):
    before = _mtimes(prepared)
    assert main(["prepare", "--config", TINY, *_overrides(prepared)]) == 0
    assert "up to date" in capsys.readouterr().out
    assert _mtimes(prepared) == before


def test_changed_setting_or_missing_output_is_not_up_to_date(prepared):
    from tropd.tiny.build import is_up_to_date

    cfg = load_config(TINY, overrides=_overrides(prepared))
    assert is_up_to_date(cfg)
    assert not is_up_to_date(load_config(TINY, overrides=_overrides(prepared, **{"prepare.mismatch": 0.3})))
    assert not is_up_to_date(load_config(TINY, overrides=_overrides(prepared, seed=1)))
    moved = prepared / "data" / "code" / "test.jsonl"
    moved.rename(moved.with_suffix(".bak"))
    try:
        assert not is_up_to_date(cfg)
    finally:
        moved.with_suffix(".bak").rename(moved)


def test_models_load_and_share_the_tokenizer(prepared):
    models = prepared / "models"
    specs = {r: ModelSpec(path=str(models / r), device="cpu") for r in ("teacher", "student")}
    toks = {r: load_tokenizer(s) for r, s in specs.items()}
    t_tok, s_tok = toks["teacher"], toks["student"]
    assert t_tok.get_vocab() == s_tok.get_vocab() and t_tok.chat_template == s_tok.chat_template
    assert (t_tok.bos_token_id, t_tok.eos_token_id, t_tok.pad_token_id) == (1, 2, 0)
    teacher, student = load_model(specs["teacher"], "teacher"), load_model(specs["student"], "student")
    size = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert size(teacher) > size(student)
    assert teacher.config.vocab_size == student.config.vocab_size == len(t_tok)
    ids = t_tok(format_prompt(t_tok, "Write cat dog. No commas."), add_special_tokens=False,
                return_tensors="pt")["input_ids"]
    assert torch.isfinite(teacher(input_ids=ids).logits).all()


def test_chat_template_makes_code_completion_the_body(prepared):
    tok = load_tokenizer(ModelSpec(path=str(prepared / "models" / "teacher")))
    row = read_jsonl(prepared / "data" / "code" / "test.jsonl")[0]
    rendered = format_prompt(tok, row["prompt"])
    assert rendered == "<bos>" + row["prompt"] + "<|answer|>"
    p_ids = tok(rendered, add_special_tokens=False)["input_ids"]
    a_ids = tok(row["canonical_solution"], add_special_tokens=False)["input_ids"]
    text = tok.decode(p_ids + a_ids + [tok.eos_token_id], skip_special_tokens=True)
    assert text == row["prompt"] + row["canonical_solution"]  # char-level: no spaces inserted
    assert tok.convert_ids_to_tokens(a_ids)[0] == "    "  # one token per indentation level
    for r in read_jsonl(prepared / "data" / "train.jsonl"):
        assert tok.decode(tok(r["reference"], add_special_tokens=False)["input_ids"]) == r["reference"]


def test_external_kind_checks_paths(prepared, tmp_path, capsys):
    import yaml

    cfg = {"profile": "ext", "prepare": {"kind": "external"}, "paths": {"data": str(tmp_path / "data")},
           "teacher": {"path": str(prepared / "models" / "teacher")},
           "student": {"path": str(tmp_path / "missing")}}
    path = tmp_path / "ext.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["prepare", "--config", str(path)]) == 2
    assert "student: model not found" in capsys.readouterr().err
    cfg["student"]["path"] = cfg["teacher"]["path"]
    path.write_text(yaml.safe_dump(cfg))
    assert main(["prepare", "--config", str(path)]) == 2
    assert "train.jsonl is missing" in capsys.readouterr().err
    (tmp_path / "data").mkdir()
    row = '{"id": "a", "domain": "math", "prompt": "1+1?", "reference": "2"}\n'
    (tmp_path / "data" / "train.jsonl").write_text(row)
    assert main(["prepare", "--config", str(path)]) == 0


def test_bad_prepare_setting_is_a_one_line_error(tmp_path, capsys):
    assert main(["prepare", "--config", TINY, *_overrides(tmp_path, **{"prepare.student_hidden": 12})]) == 2
    assert "prepare.student_hidden" in capsys.readouterr().err
    assert main(["prepare", "--config", TINY, *_overrides(tmp_path, **{"prepare.teacher_steps": -1})]) == 2
    assert "prepare.teacher_steps" in capsys.readouterr().err
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_teacher_once_then_students_per_mismatch_level(tmp_path):
    """prepare.build: teacher writes the data and the teacher; build: student (per level, its own
    paths.models) trains only a student, with the teacher's tokenizer, and probes it; a level's second
    call does nothing, and a teacher stamp ignores the student's settings."""
    from tropd.tiny.build import is_up_to_date

    torch.set_num_threads(1)
    base = _overrides(tmp_path, **{"teacher.path": str(tmp_path / "models" / "teacher")})
    assert main(["prepare", "--config", TINY, *base, "prepare.build=teacher"]) == 0
    assert (tmp_path / "models" / "teacher" / "model.safetensors").is_file()
    assert not (tmp_path / "models" / "student").exists()
    assert is_up_to_date(load_config(TINY, overrides=[*base, "prepare.build=teacher", "prepare.mismatch=0.9"]))
    for level in ("0.2", "0.8"):
        lv = [*base, "prepare.build=student", f"prepare.mismatch={level}",
              f"paths.models={tmp_path / 'models' / ('m' + level)}"]
        assert main(["prepare", "--config", TINY, *lv]) == 0
        probe = json.loads((tmp_path / "models" / f"m{level}" / "probe.json").read_text())
        assert probe["mismatch_knob"] == float(level) and "student_samples" in probe["teacher_logp"]
        assert (tmp_path / "models" / f"m{level}" / "student" / "tokenizer.json").is_file()
        assert not (tmp_path / "models" / f"m{level}" / "teacher").exists()
        assert is_up_to_date(load_config(TINY, overrides=lv))
