"""Atomic file writes: a reader never sees a half-written output."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict]:
    """Read JSONL; a bad line is an error naming the file and line number."""
    from tropd.errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    opener = __import__("gzip").open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{i}: invalid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{i}: expected a JSON object")
            rows.append(row)
    return rows


def reraise_io(e: Exception) -> None:
    """Re-raise a library's wrapped I/O failure (safetensors: '... (os error 28)') as OSError."""
    msg = str(e)
    if "os error" in msg:
        raise OSError(msg.rsplit(": ", 1)[-1].split(" (os error")[0]) from None
    raise e


def move_into(tmp: Path, final: Path, last: str = "") -> None:
    """Move every entry of `tmp` into `final`, replacing what is there, the entry named `last` (a
    "prepared" stamp) after all others. A folder being replaced is renamed aside first and deleted
    after the new one is in place, so `final` never lacks the entry."""
    final.mkdir(parents=True, exist_ok=True)
    for entry in sorted(tmp.iterdir(), key=lambda e: e.name == last):
        dest = final / entry.name
        if dest.is_dir() and not dest.is_symlink():
            trash = final / f".{entry.name}.old-{os.getpid()}"
            dest.rename(trash)
            entry.rename(dest)
            shutil.rmtree(trash)
        else:
            os.replace(entry, dest)
