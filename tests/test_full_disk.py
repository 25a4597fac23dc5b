"""Issue 32 item 2: a write that fails (disk full, file size limit) is one line, exit 1, the
previous file intact and no temporary file left. The fault is built with ``RLIMIT_FSIZE``
(writes past N bytes fail with EFBIG, ``SIGXFSZ`` ignored) in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dreamprune_cli.models.checkpoint import save_safetensors
from dreamprune_cli.models.registry import build_model, model_config

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "win32",
                                reason="RLIMIT_FSIZE is POSIX")

LIMITED = '''
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
'''

CLI = LIMITED + '''
sys.argv = ["dreamprune", *sys.argv[1:]]
from dreamprune_cli.cli import main
main()
'''

WRITERS = LIMITED + '''
import json
import numpy as np
import torch
from dreamprune_cli.data.images import write_png
from dreamprune_cli.errors import RuntimeFailure
from dreamprune_cli.fileio import atomic_write, write_json_atomic
from dreamprune_cli.models.checkpoint import save_safetensors

folder = sys.argv[1]
big = {{"w": torch.randn(20000)}}
writers = {{
    "student.safetensors": lambda p: save_safetensors(p, big, "ffa", {{}}, overwrite=True),
    "report.json": lambda p: write_json_atomic(p, list(range(5000)), overwrite=True),
    "restored.png": lambda p: write_png(p, torch.rand(3, 64, 64), overwrite=True),
    "state.pt": lambda p: atomic_write(p, lambda t: torch.save(big, t), overwrite=True),
    "legacy.pt": lambda p: atomic_write(
        p, lambda t: torch.save(big, t, _use_new_zipfile_serialization=False), overwrite=True),
}}
for name, write in writers.items():
    try:
        write(folder + "/" + name)
        print(json.dumps([name, "written"]))
    except RuntimeFailure as exc:
        print(json.dumps([name, "RuntimeFailure", str(exc)]))
    except Exception as exc:
        print(json.dumps([name, type(exc).__name__, str(exc)]))
'''

OLD = b"the previous good file\n"


def _child(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_every_writer_reports_a_failed_write(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    names = ["student.safetensors", "report.json", "restored.png", "state.pt", "legacy.pt"]
    for name in names:
        (out / name).write_bytes(OLD)
    result = _child(WRITERS.format(limit=4096), str(out))
    assert result.returncode == 0, result.stderr
    outcomes = {row[0]: row[1:] for row in map(json.loads, result.stdout.splitlines())}
    assert set(outcomes) == set(names)
    for name in names:
        kind, message = outcomes[name]
        assert kind == "RuntimeFailure", (name, kind, message)
        assert message.startswith(f"cannot write {out / name}: "), message
        assert (out / name).read_bytes() == OLD, name
    assert "File too large" in outcomes["student.safetensors"][1]  # safetensors' own I/O
    assert "File too large" in outcomes["report.json"][1]
    assert _leftovers(out) == []


def test_export_to_a_full_disk_exits_1_naming_the_file(tmp_path: Path) -> None:
    config = model_config("ffa", "tiny")
    torch.manual_seed(0)
    source = save_safetensors(tmp_path / "teacher.safetensors",
                              build_model("ffa", "tiny").state_dict(), "ffa", config)
    assert source.stat().st_size > 8192
    dest = tmp_path / "student.safetensors"
    dest.write_bytes(OLD)
    result = _child(CLI.format(limit=8192), "export", "--weights", str(source), "--out",
                    str(dest), "--overwrite")
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"error: cannot write {dest}: File too large"), lines
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert dest.read_bytes() == OLD
    assert _leftovers(tmp_path) == []
