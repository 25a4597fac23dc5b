"""The command line: help, version, JSON output, exit codes, one-line errors."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dreamprune_cli.cli import app


def test_help_lists_working_subcommands(runner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("evaluate", "models", "config", "export"):
        assert command in result.output


def test_version(runner) -> None:
    from dreamprune_cli import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_config_show_json_and_sources(runner) -> None:
    result = runner.invoke(app, ["config", "show", "--model", "hinet", "--json"],
                           env={"DREAMPRUNE_SEED": "4"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["settings"]["prune"]["flops_target"] == 0.58
    assert data["settings"]["common"]["seed"] == 4
    assert data["sources"]["seed"] == "env DREAMPRUNE_SEED"
    assert data["sources"]["model"] == "flag --model"
    assert data["sources"]["metric_space"].startswith("preset ")


def test_config_show_names_the_models_scoring_protocol(runner) -> None:
    # PReNet's registry entry truncates outputs to 8 bits as the authors' test script does
    result = runner.invoke(app, ["config", "show", "--model", "prenet", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model_defaults"] == {"ssim_variant": "basicsr", "quantize": "truncate"}
    assert data["settings"]["evaluate"]["quantize"] is None  # the settings stay as resolved
    flagged = runner.invoke(app, ["config", "show", "--model", "prenet", "--json"],
                            env={"DREAMPRUNE_QUANTIZE": "round"})
    assert "quantize" not in json.loads(flagged.stdout)["model_defaults"]
    table = runner.invoke(app, ["config", "show", "--model", "prenet"],
                          env={"COLUMNS": "200"})
    line = next(row for row in table.output.splitlines() if "evaluate.quantize" in row)
    assert "truncate" in line and "model prenet (registry)" in line


def test_invalid_env_value_one_line_exit_2(runner) -> None:
    result = runner.invoke(app, ["config", "show"], env={"DREAMPRUNE_FLOPS_TARGET": "1.5"})
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "flops_target" in lines[0] and "1.5" in lines[0]


def test_models_json(runner) -> None:
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    models = {m["name"]: m for m in json.loads(result.stdout)["models"]}
    assert set(models) == {"identity", "ffa", "hinet", "mprnet", "aganet", "durn_s", "durn_s_p",
                           "prenet", "prenet_r", "prn", "prn_r", "prenet_lstm", "prenet_gru",
                           "prenet_x", "gcanet", "gcanet_derain"}
    assert models["ffa"]["params"] == 4_455_913
    assert models["prenet"]["params"] == 168_963 and models["gcanet"]["params"] == 702_818
    assert models["hinet"]["size_multiple"] == 16
    assert models["aganet"]["channel_order"] == "BGR"


def _numpy_psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    weights = np.array([65.481, 128.553, 24.966]) / 255.0
    ya = a.astype(np.float64) @ weights + 16.0
    yb = b.astype(np.float64) @ weights + 16.0
    return 10 * math.log10(255**2 / np.mean((ya - yb) ** 2))


def test_evaluate_identity_matches_numpy(runner, pair_dirs) -> None:
    inputs, targets = pair_dirs
    result = runner.invoke(app, ["evaluate", "--model", "identity", "--input-dir", str(inputs),
                                 "--target-dir", str(targets), "--metric-space", "y", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("psnr", "ssim", "count", "metric_space", "macs", "params", "seconds", "per_image"):
        assert key in data
    assert data["count"] == 3 and data["metric_space"] == "y"
    assert set(data["per_image"][0]) == {"name", "psnr", "ssim"}
    expected = []
    for path in sorted(inputs.iterdir()):
        a = np.asarray(Image.open(path))
        b = np.asarray(Image.open(targets / path.name))
        expected.append(_numpy_psnr_y(a, b))
    assert abs(data["psnr"] - float(np.mean(expected))) < 0.01


def test_evaluate_identical_pairs_give_inf_psnr(runner, pair_dirs, tmp_path: Path) -> None:
    _, targets = pair_dirs
    copies = shutil.copytree(targets, tmp_path / "copies")  # the same folder is refused
    result = runner.invoke(app, ["evaluate", "--model", "identity", "--input-dir", str(copies),
                                 "--target-dir", str(targets), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # a perfect score is "inf", never null (NaN's value)
    assert data["psnr"] == "inf" and data["per_image"][0]["psnr"] == "inf"
    table = runner.invoke(app, ["evaluate", "--model", "identity", "--input-dir", str(copies),
                                "--target-dir", str(targets)])
    assert "inf" in table.output


def test_evaluate_truncated_png_one_line(runner, pair_dirs) -> None:
    inputs, targets = pair_dirs
    data = (inputs / "img0.png").read_bytes()
    (inputs / "img0.png").write_bytes(data[: len(data) // 2])
    result = runner.invoke(app, ["evaluate", "--model", "identity", "--input-dir", str(inputs),
                                 "--target-dir", str(targets), "--json"])
    assert result.exit_code == 2
    assert "img0.png" in result.output and "Traceback" not in result.output
    error = json.loads(result.stdout)  # --json: the one object on stdout is the error
    assert error["exit_code"] == 2 and "img0.png" in error["error"]


def test_evaluate_bad_folders(runner, pair_dirs, tmp_path: Path) -> None:
    inputs, targets = pair_dirs
    missing = runner.invoke(app, ["evaluate", "--model", "identity", "--input-dir",
                                  str(tmp_path / "nope"), "--target-dir", str(targets)])
    assert missing.exit_code == 2 and "no such directory" in missing.output
    (targets / "img2.png").unlink()
    unpaired = runner.invoke(app, ["evaluate", "--model", "identity", "--input-dir", str(inputs),
                                   "--target-dir", str(targets)])
    assert unpaired.exit_code == 2 and "no target for img2.png" in unpaired.output
    half = runner.invoke(app, ["evaluate", "--model", "identity", "--input-dir", str(inputs)])
    assert half.exit_code == 2 and "go together" in half.output


def test_evaluate_save_dir_no_clobber(runner, pair_dirs, tmp_path: Path) -> None:
    inputs, targets = pair_dirs
    args = ["evaluate", "--model", "identity", "--input-dir", str(inputs), "--target-dir",
            str(targets), "--save-dir", str(tmp_path / "out")]
    first = runner.invoke(app, args + ["--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["save_dir"] == str(tmp_path / "out")  # says where
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img0.png", "img1.png",
                                                                    "img2.png"]
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already exists" in again.output
    assert runner.invoke(app, args + ["--overwrite"]).exit_code == 0


def test_custom_models(runner, pair_dirs, tmp_path: Path) -> None:
    inputs, targets = pair_dirs
    good = tmp_path / "mine.py"
    good.write_text("import torch\nclass Half(torch.nn.Module):\n"
                    "    def forward(self, x):\n        return x * 0.5\n"
                    "def not_a_module():\n    return 3\n")
    ok = runner.invoke(app, ["evaluate", "--model", f"{good}:Half", "--input-dir", str(inputs),
                             "--target-dir", str(targets), "--json"])
    assert ok.exit_code == 0, ok.output
    cases = {
        "no_such_pkg_xyz.mod:factory": "import failed",
        f"{good}:Missing": "has no attribute 'Missing'",
        f"{good}:not_a_module": "expected a torch.nn.Module",
        f"{tmp_path / 'absent.py'}:X": "no such file",
    }
    for spec, message in cases.items():
        result = runner.invoke(app, ["evaluate", "--model", spec, "--input-dir", str(inputs),
                                     "--target-dir", str(targets)])
        assert result.exit_code == 2, (spec, result.output)
        assert message in result.output and "Traceback" not in result.output


def test_unknown_model_exit_2(runner) -> None:
    result = runner.invoke(app, ["evaluate", "--model", "nonexistent"])
    assert result.exit_code == 2 and "invalid model='nonexistent'" in result.output


def test_console_script_json_stdout_only(pair_dirs) -> None:
    """Through a real process: stdout holds exactly one JSON object, logs go to stderr."""
    inputs, targets = pair_dirs
    proc = subprocess.run([sys.executable, "-m", "dreamprune_cli", "evaluate", "--model",
                           "identity", "--input-dir", str(inputs), "--target-dir",
                           str(targets), "--json"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert isinstance(json.loads(proc.stdout), dict)
    assert proc.stdout.count("\n") == 1
