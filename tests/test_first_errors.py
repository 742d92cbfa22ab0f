"""The errors a newcomer meets first: every subcommand on every profile before `tropd prepare` stops
with one line that names what is missing and the command that makes it (exit code 2), never a
library's traceback or message (transformers' "Repo id must be in the form ..." used to come out)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tropd.cli import main

PROFILES = sorted(p.stem for p in (Path(__file__).parents[1] / "configs").glob("*.yaml"))


def _unprepared(tmp_path: Path) -> list[str]:
    """Overrides that point a profile's data, results and models at empty folders: "before prepare"
    even in a checkout where the profile was prepared."""
    return [f"paths.data={tmp_path}/data", f"paths.results={tmp_path}/results",
            f"paths.models={tmp_path}/models", f"teacher.path={tmp_path}/models/teacher", f"student.path={tmp_path}/models/student"]


def _one_line_error(capsys, *expect: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Repo id" not in err and "Traceback" not in err, err
    for e in expect:
        assert e in err, err
    return err


@pytest.mark.parametrize("profile", PROFILES)
def test_every_subcommand_before_prepare(profile, tmp_path, capsys):
    cfg = f"configs/{profile}.yaml"
    over = _unprepared(tmp_path)
    external = profile.startswith("paper")
    hint = "download it and set teacher.path" if external else f"run `tropd prepare --config {cfg}`"
    assert main(["train", "--config", cfg, "--method", "opd", "--seed", "0", "--out", str(tmp_path / "run"),
                 *over]) == 2
    _one_line_error(capsys, "teacher: model not found", hint)
    assert not (tmp_path / "run").exists()  # nothing half-written
    assert main(["preflight", "--config", cfg, *over]) == 2
    _one_line_error(capsys, "teacher: model not found", hint)
    assert main(["eval", "--config", cfg, "--model", str(tmp_path / "runs" / "student"), "--task", "gsm8k",
                 "--out", str(tmp_path / "e.json")]) == 2
    _one_line_error(capsys, "--model: model not found")
    assert main(["aggregate", "--config", cfg, "--out", str(tmp_path / "agg"), *over]) == 2
    _one_line_error(capsys, "no eval summaries", "run the workflow")
    if external:  # `tropd prepare` on an external profile only checks; on the others it builds (not here)
        assert main(["prepare", "--config", cfg, *over]) == 2
        _one_line_error(capsys, "teacher: model not found", hint)


def test_tiny_task_data_before_prepare(tmp_path, capsys):
    import yaml

    cfg = yaml.safe_load(Path("configs/tiny.yaml").read_text())
    cfg["paths"]["data"] = str(tmp_path / "data")  # `tropd score` takes no overrides
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"id": "x", "completion": "1"}\n')
    assert main(["score", "--config", str(tmp_path / "tiny.yaml"), "--task", "tiny_math", "--samples",
                 str(samples), "--out", str(tmp_path / "o.json")]) == 2
    _one_line_error(capsys, "profile 'tiny' is not prepared", f"tropd prepare --config {tmp_path / 'tiny.yaml'}")


def test_uncached_hub_id_is_one_line(tmp_path, capsys):
    assert main(["preflight", "--config", "configs/paper-deepseek.yaml",
                 "teacher.path=tropd-tests/not-a-model-anywhere"]) == 2
    _one_line_error(capsys, "nor in the local Hugging Face cache")
