"""`tropd eval` and `tropd score` end to end on a throw-away profile (random tiny models, tiny task
files made by tropd.tiny's generators): the summary schema, identical numbers from two runs with
one seed, gold answers scoring 1, unknown ids refused before anything is written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import build_profile

from tropd.cli import main
from tropd.eval.tasks import benchmarks_root
from tropd.evaluate import samples_path
from tropd.infra.io import atomic_write_jsonl, read_jsonl
from tropd.tiny.synthetic import generate, held_out_rows

KEYS = {"task", "domain", "model", "n_items", "n_samples", "primary", "metrics", "decoding", "config_hash",
        "code_version", "versions", "wall_s", "tokens_generated"}
DOMAINS = ("math", "code", "instruct")


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    """(config path, models folder, {domain: held-out synthetic items}) with 6 test items a domain."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("eval_profile")
    cfg = build_profile(root)
    tests = {}
    for d in DOMAINS:
        _, tests[d] = generate(d, 0, 4, 6)
        atomic_write_jsonl(root / "data" / d / "test.jsonl", held_out_rows(d, tests[d]))
    data = yaml.safe_load(cfg.read_text())
    data["eval"] = {"tasks": ["tiny_math"], "max_new_tokens": 12, "batch_size": 4}
    cfg.write_text(yaml.safe_dump(data))
    return cfg, root / "models", tests


def _eval(cfg, model, task, out, *extra) -> dict:
    assert main(["eval", "--config", str(cfg), "--model", str(model), "--task", task, "--out", str(out),
                 *extra]) == 0
    return json.loads(Path(out).read_text())


def test_eval_summary_schema_and_determinism(profile, tmp_path):
    cfg, models, _ = profile
    args = ("--k", "2", "--temperature", "1.0", "--seed", "7", "--limit", "4")
    a = _eval(cfg, models / "teacher", "tiny_math", tmp_path / "a.json", *args)
    b = _eval(cfg, models / "teacher", "tiny_math", tmp_path / "b.json", *args)
    assert set(a) == KEYS
    assert a["domain"] == "math" and a["primary"] == "acc" and a["n_items"] == 4 and a["n_samples"] == 8
    rows = read_jsonl(tmp_path / "a.samples.jsonl")
    assert a["decoding"] == {"k": 2, "temperature": 1.0, "max_new_tokens": 12, "seed": 7, "limit": 4,
                             "backend": "hf"}
    assert a["tokens_generated"] == sum(r["n_tokens"] for r in rows) > 0
    assert a["config_hash"] and isinstance(a["code_version"], str) and a["model"] == str(models / "teacher")
    from importlib.metadata import version

    from tropd.eval.graders.ifeval import punkt_available
    from tropd.versions import package_versions

    # the packages that produced the numbers, graders' libraries and NLTK data included
    assert a["versions"] == package_versions()
    v = a["versions"]
    assert v["torch"] == version("torch") and v["transformers"] == version("transformers")
    assert a["versions"]["math-verify"] == version("math-verify") and a["versions"]["nltk"] == version("nltk")
    assert a["versions"]["punkt_tab"] == ("available" if punkt_available() else "missing")
    for m in a["metrics"].values():
        assert 0 <= m["ci95"][0] <= m["mean"] <= m["ci95"][1] <= 1
    assert "pass@2" in a["metrics"]
    assert a["metrics"] == b["metrics"]
    rows_a, rows_b = read_jsonl(tmp_path / "a.samples.jsonl"), read_jsonl(tmp_path / "b.samples.jsonl")
    assert [r["completion"] for r in rows_a] == [r["completion"] for r in rows_b]
    assert [(r["id"], r["sample"]) for r in rows_a][:2] == [("tiny_math/0", 0), ("tiny_math/0", 1)]
    # another seed draws other samples
    c = _eval(cfg, models / "teacher", "tiny_math", tmp_path / "c.json", "--k", "2", "--temperature", "1.0",
              "--seed", "8", "--limit", "4")
    assert [r["completion"] for r in read_jsonl(tmp_path / "c.samples.jsonl")] != [r["completion"] for r in rows_a]
    assert c["decoding"]["seed"] == 8


def test_eval_code_and_instruct_tasks(profile, tmp_path):
    cfg, models, _ = profile
    for task, primary in (("tiny_code", "plus_pass@1"), ("tiny_instruct", "prompt_strict")):
        s = _eval(cfg, models / "student", task, tmp_path / f"{task}.json", "--limit", "3")
        assert s["primary"] == primary and primary in s["metrics"] and s["n_samples"] == 3
        assert s["decoding"]["temperature"] == 0.0
        rows = read_jsonl(tmp_path / f"{task}.samples.jsonl")
        assert len(rows) == 3
    # the tiny models continue the prompt: each row keeps the program checked (the prompt is in it)
    assert all(r["code_mode"] == "continuation" and r["solution"].lstrip().startswith("def ")
               and "duration_s" in r for r in read_jsonl(tmp_path / "tiny_code.samples.jsonl"))


def test_eval_of_a_chat_model_on_humanevalplus_checks_its_sanitized_answer(profile, tmp_path, monkeypatch):
    """The tiny models have a chat template: a real code task is read as chat answers (evalplus's
    sanitize, no prompt prepended); two HumanEval+ problems keep the ground truth quick."""
    import gzip

    from tropd.eval.graders import code

    cfg, models, _ = profile
    src = benchmarks_root() / "humanevalplus" / "HumanEvalPlus.jsonl.gz"
    if not src.is_file():
        pytest.skip("no shared/benchmarks")
    dst = tmp_path / "bench" / "humanevalplus" / "HumanEvalPlus.jsonl.gz"
    dst.parent.mkdir(parents=True)
    with gzip.open(src, "rt") as f, gzip.open(dst, "wt") as g:
        g.writelines([next(f), next(f)])
    monkeypatch.setenv("TROPD_BENCHMARKS", str(tmp_path / "bench"))
    monkeypatch.setenv("TROPD_CACHE", str(tmp_path / "cache"))
    s = _eval(cfg, models / "student", "humanevalplus", tmp_path / "he.json", "--max-new-tokens", "8")
    rows = read_jsonl(tmp_path / "he.samples.jsonl")
    assert s["n_items"] == 2 and [r["code_mode"] for r in rows] == ["chat", "chat"]
    eps = ["has_close_elements", "separate_paren_groups"]
    assert [r["solution"] for r in rows] == [code.solution_for("chat", "humaneval", "", r["completion"], ep)
                                             for r, ep in zip(rows, eps)]
    assert all(r["base"] == "fail" and r["reason"] in ("error", "wrong") for r in rows)  # random models


def test_eval_several_seeds_and_tasks_in_one_process(profile, tmp_path):
    """`--seed 0,1 --task a,b` fills {seed} and {task}; each file equals its one-task, one-seed run
    (greedy results are reused across seeds, sampled ones are drawn per seed)."""
    cfg, models, _ = profile
    pattern = str(tmp_path / "s{seed}" / "{task}.json")
    assert main(["eval", "--config", str(cfg), "--model", str(models / "teacher"), "--task",
                 "tiny_math,tiny_instruct", "--seed", "0,1", "--limit", "3", "--out", pattern]) == 0
    single = _eval(cfg, models / "teacher", "tiny_instruct", tmp_path / "one.json", "--seed", "1", "--limit", "3")
    for seed in (0, 1):
        for task in ("tiny_math", "tiny_instruct"):
            d = json.loads((tmp_path / f"s{seed}" / f"{task}.json").read_text())
            assert d["task"] == task and d["decoding"]["seed"] == seed
            # tokens are counted where they were generated: seed 1 reuses seed 0's greedy samples
            assert (d["tokens_generated"] > 0) == (seed == 0), (seed, task)
    grouped = json.loads((tmp_path / "s1" / "tiny_instruct.json").read_text())
    assert grouped["metrics"] == single["metrics"]
    assert read_jsonl(tmp_path / "s1" / "tiny_instruct.samples.jsonl") == read_jsonl(tmp_path / "one.samples.jsonl")
    assert main(["eval", "--config", str(cfg), "--model", str(models / "teacher"), "--task",
                 "tiny_math,tiny_code", "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()


@pytest.mark.skipif(not (benchmarks_root() / "mmlu").is_dir(), reason="no shared/benchmarks")
def test_eval_mmlu_loglikelihood(profile, tmp_path):
    cfg, models, _ = profile
    s = _eval(cfg, models / "student", "mmlu", tmp_path / "mmlu.json", "--limit", "3")
    assert s["domain"] == "general" and s["n_items"] == 3 and s["decoding"]["max_new_tokens"] == 0
    rows = read_jsonl(tmp_path / "mmlu.samples.jsonl")
    n = 14042  # MMLU test; a subset is spread over its subject-sorted file (tropd.eval.tasks.load_items)
    assert [r["id"] for r in rows] == [f"mmlu/{i * n // 3}" for i in range(3)]
    assert all(len(r["loglik"]) == 4 and r["pred"] in "ABCD" for r in rows)


def _gold_lines(domain, items, rows) -> list[dict]:
    ids = {"math": [f"tiny_math/{i}" for i in range(len(rows))], "code": [r.get("task_id") for r in rows],
           "instruct": [r.get("key") for r in rows]}[domain]
    return [{"id": i, "completion": it.answer} for i, it in zip(ids, items)]


@pytest.mark.parametrize("domain", DOMAINS)
def test_score_gold_answers(profile, tmp_path, domain):
    cfg, _, tests = profile
    samples = tmp_path / "gold.jsonl"
    atomic_write_jsonl(samples, _gold_lines(domain, tests[domain], held_out_rows(domain, tests[domain])))
    out = tmp_path / "gold.json"
    assert main(["score", "--config", str(cfg), "--task", f"tiny_{domain}", "--samples", str(samples),
                 "--out", str(out)]) == 0
    s = json.loads(out.read_text())
    assert s["metrics"][s["primary"]]["mean"] == 1.0 and s["model"] is None and s["n_items"] == 6


def test_score_versions_and_unparsable_gold(profile, tmp_path, capsys):
    """`score` records the versions block too; a tiny_math gold with no number after '####' stops it
    with a one-line error naming the file and item, before anything is written."""
    cfg, _, tests = profile
    samples = tmp_path / "gold.jsonl"
    atomic_write_jsonl(samples, _gold_lines("math", tests["math"], held_out_rows("math", tests["math"])))
    out = tmp_path / "gold.json"
    assert main(["score", "--config", str(cfg), "--task", "tiny_math", "--samples", str(samples),
                 "--out", str(out)]) == 0
    assert set(json.loads(out.read_text())) == KEYS and json.loads(out.read_text())["versions"]["torch"]

    data = yaml.safe_load(cfg.read_text())
    bad_data = tmp_path / "data"
    rows = held_out_rows("math", tests["math"])
    rows[2] = {**rows[2], "answer": rows[2]["answer"].rsplit("####", 1)[0] + "#### n/a"}
    atomic_write_jsonl(bad_data / "math" / "test.jsonl", rows)
    data["paths"]["data"] = str(bad_data)
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text(yaml.safe_dump(data))
    out = tmp_path / "bad.json"
    assert main(["score", "--config", str(bad_cfg), "--task", "tiny_math", "--samples", str(samples),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad_data / "math" / "test.jsonl") in err[0]
    assert "item 2 (tiny_math/2): gold answer has no number after '####'" in err[0]
    assert not out.exists()


def test_score_refuses_unknown_ids(profile, tmp_path, capsys):
    cfg, _, _ = profile
    samples = tmp_path / "bad.jsonl"
    atomic_write_jsonl(samples, [{"id": "tiny_math/0", "completion": "#### 1"},
                                 {"id": "nope/9", "completion": "#### 1"}])
    out = tmp_path / "bad.json"
    assert main(["score", "--config", str(cfg), "--task", "tiny_math", "--samples", str(samples),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope/9" in err[0]
    assert not out.exists() and not samples_path(out).exists()


def test_bad_requests_are_one_line_errors(profile, tmp_path, capsys):
    cfg, models, _ = profile
    out = str(tmp_path / "x.json")
    assert main(["eval", "--config", str(cfg), "--model", str(models / "teacher"), "--task", "nosuch",
                 "--out", out]) == 2
    assert main(["eval", "--config", str(cfg), "--model", str(models / "teacher"), "--task", "tiny_math",
                 "--k", "3", "--temperature", "0", "--out", out]) == 2
    assert main(["score", "--config", str(cfg), "--task", "tiny_math", "--samples",
                 str(tmp_path / "missing.jsonl"), "--out", out]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 3 and not Path(out).exists()
