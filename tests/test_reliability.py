"""Issue 16: each kind of fault fixed as a kind; each case a test, plus a further instance.

1 a file's own model identity, 2 custom models run the whole method, 3 non-finite values,
4 a resumed run matches the run it resumes, 5 inputs checked before any work, 6 stopped by a
scheduler (SIGTERM), 7 a model without weights, 8 ``--quiet``. Plus issue 21 point 4: with
``--json`` stdout holds exactly one JSON object, errors included.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamprune_cli.cli import app
from dreamprune_cli.finite import nonfinite_entries
from dreamprune_cli.models.checkpoint import save_safetensors
from dreamprune_cli.models.registry import build_model, model_config
from tests.conftest import save_rgb

SMALL = ["--device", "cpu", "--size", "32", "--batch-size", "2"]


def _weights(tmp_path: Path, name: str, **overrides: object) -> Path:
    """A random tiny ``name`` saved by dreamprune (its metadata names the model)."""
    config = model_config(name, "tiny", **overrides)
    torch.manual_seed(0)
    network = build_model(name, "tiny", **overrides)
    return save_safetensors(tmp_path / f"{name}.safetensors", network.state_dict(), name, config)


def _pipeline_args(weights: Path, out: Path, pairs: tuple[Path, Path], *extra: str) -> list[str]:
    inputs, targets = pairs
    return ["pipeline", "--weights", str(weights), "--flops-target", "0.58", "--steps", "2",
            "--flops-size", "64", "--out", str(out), "--eval-input-dir", str(inputs),
            "--eval-target-dir", str(targets), "--allocator", "lamp", *SMALL, *extra]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The console entry point in a real process (stderr not a terminal)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", "from dreamprune_cli.cli import main; main()",
                           *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=timeout, env=env)


UNET = '''
import torch
from torch import nn

class UNet(nn.Module):
    """Two poolings: sides must be multiples of 4 (the skip connections concatenate)."""
    {declare}
    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(3, 8, 3, padding=1)
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 8, 4, stride=4)
        self.head = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x):
        e = torch.relu(self.enc(x))
        m = torch.relu(self.mid(nn.functional.max_pool2d(e, 4)))
        return x + self.head(torch.cat([e, self.up(m)], dim=1))

class TwoOutputs(nn.Module):
    {declare_index}
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return (self.conv(x), x)

class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(x) * float("nan")

class Noisy(nn.Module):
    def forward(self, x):
        import warnings
        warnings.warn("a library warning from inside the model")
        return x
'''


def _model_file(tmp_path: Path, declared: bool = True) -> Path:
    path = tmp_path / ("declared.py" if declared else "plain.py")
    path.write_text(UNET.format(declare="size_multiple = 4" if declared else "",
                                declare_index="output_index = 0" if declared else ""))
    return path


# ------------------------------------------------------------------ 1 a file's own model
def test_dream_loads_the_model_its_weights_file_names(runner, tmp_path: Path) -> None:
    weights = _weights(tmp_path, "hinet")
    out = tmp_path / "d"
    result = runner.invoke(app, ["dream", "--weights", str(weights), "--save-dir", str(out),
                                 "--count", "2", "--steps", "2", *SMALL, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "hinet"
    # --model given wins, with a warning naming both
    other = runner.invoke(app, ["dream", "--model", "ffa", "--weights", str(weights),
                                "--save-dir", str(tmp_path / "e"), "--count", "2", "--steps",
                                "2", *SMALL])
    assert other.exit_code == 2
    assert "saved for model 'hinet', loading it as 'ffa'" in other.output
    assert "Traceback" not in other.output


@pytest.mark.slow
def test_resumed_pipeline_takes_model_and_weights_from_its_folder(runner, tmp_path: Path,
                                                                  pair_dirs) -> None:
    weights = _weights(tmp_path, "durn_s")
    out = tmp_path / "run"
    first = runner.invoke(app, _pipeline_args(weights, out, pair_dirs))
    assert first.exit_code == 0, first.output
    more = runner.invoke(app, ["pipeline", "--resume", str(out), "--steps", "3", "--json"])
    assert more.exit_code == 0, more.output
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "durn_s" and report["steps"] == 3
    assert report["settings"]["weights"] == str(weights.resolve())


def test_distill_takes_the_teacher_model_from_its_files(runner, tmp_path: Path) -> None:
    """Further instance: distill asked for --model although both files name it."""
    weights = _weights(tmp_path, "durn_s")
    pruned = tmp_path / "pruned"
    assert runner.invoke(app, ["prune", "--weights", str(weights), "--flops-target", "0.6",
                               "--allocator", "lamp", "--flops-size", "64", "--out",
                               str(pruned)]).exit_code == 0
    result = runner.invoke(app, ["distill", "--weights", str(weights), "--student",
                                 str(pruned / "student.safetensors"), "--out",
                                 str(tmp_path / "dist"), "--steps", "2", *SMALL, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mode"] == "online"
    wrong = runner.invoke(app, ["distill", "--weights", str(_weights(tmp_path, "hinet")),
                                "--student", str(pruned / "student.safetensors"), "--out",
                                str(tmp_path / "dist2"), "--steps", "2", *SMALL])
    assert wrong.exit_code == 2 and "a pruned 'durn_s', but the teacher is 'hinet'" \
        in wrong.output


# ------------------------------------------------------------------ 2 custom models
@pytest.mark.slow
def test_custom_unet_runs_dream_and_pipeline(runner, tmp_path: Path, pair_dirs) -> None:
    model = f"{_model_file(tmp_path)}:UNet"
    dream = runner.invoke(app, ["dream", "--model", model, "--save-dir", str(tmp_path / "d"),
                                "--count", "2", "--steps", "2", *SMALL, "--json"])
    assert dream.exit_code == 0, dream.output
    assert isinstance(json.loads(dream.stdout)["diversity_mean_cosine"], float)
    # the pairs are 32x40: not multiples of 4 for the pooling, padded as declared
    run = runner.invoke(app, ["pipeline", "--model", model, "--flops-target", "0.7",
                              "--steps", "2", "--calibration-steps", "2", "--flops-size", "64",
                              "--out", str(tmp_path / "run"), "--eval-input-dir",
                              str(pair_dirs[0]), "--eval-target-dir", str(pair_dirs[1]),
                              *SMALL, "--json"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["macs_ratio"] == pytest.approx(0.7, rel=0.005)


def test_custom_model_size_constraint_named_before_any_work(runner, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, (height, width) in {"a": (32, 40), "b": (33, 41)}.items():
        save_rgb(tmp_path / "in" / f"{name}.png", rng.uniform(0, 1, (height, width, 3)))
        save_rgb(tmp_path / "gt" / f"{name}.png", rng.uniform(0, 1, (height, width, 3)))
    args = ["evaluate", "--input-dir", str(tmp_path / "in"), "--target-dir",
            str(tmp_path / "gt"), "--save-dir", str(tmp_path / "restored")]
    plain = runner.invoke(app, [*args, "--model", f"{_model_file(tmp_path, False)}:UNet"])
    assert plain.exit_code == 2, plain.output
    assert "b.png" in plain.output and "33x41" in plain.output
    assert "size_multiple" in plain.output and "internal error" not in plain.output
    assert not (tmp_path / "restored").exists()  # a.png was not restored first
    declared = runner.invoke(app, [*args, "--model", f"{_model_file(tmp_path)}:UNet"])
    assert declared.exit_code == 0, declared.output  # padded to the declared multiple


def test_custom_model_with_several_outputs(runner, tmp_path: Path, pair_dirs) -> None:
    """Further instance: a model returning (image, aux) failed with an internal error."""
    args = ["evaluate", "--input-dir", str(pair_dirs[0]), "--target-dir", str(pair_dirs[1])]
    plain = runner.invoke(app, [*args, "--model", f"{_model_file(tmp_path, False)}:TwoOutputs"])
    assert plain.exit_code == 2 and "declare output_index" in plain.output
    declared = runner.invoke(app, [*args, "--model", f"{_model_file(tmp_path)}:TwoOutputs"])
    assert declared.exit_code == 0, declared.output


# ------------------------------------------------------------------ 3 non-finite values
def test_nan_output_is_an_error_naming_the_image(runner, tmp_path: Path, pair_dirs) -> None:
    save = tmp_path / "restored"
    result = runner.invoke(app, ["evaluate", "--model", f"{_model_file(tmp_path)}:Broken",
                                 "--input-dir", str(pair_dirs[0]), "--target-dir",
                                 str(pair_dirs[1]), "--save-dir", str(save), "--json"])
    assert result.exit_code == 1
    error = json.loads(result.stdout)
    assert "img0.png" in error["error"] and "NaN" in error["error"]
    assert not any(save.glob("*.png"))  # no black PNGs


def test_weights_with_nan_refused_before_any_work(runner, tmp_path: Path, pair_dirs) -> None:
    """Further instance: a damaged checkpoint loaded and used as a teacher."""
    config = model_config("durn_s", "tiny")
    state = build_model("durn_s", "tiny").state_dict()
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone().fill_(float("nan"))
    path = tmp_path / "bad.safetensors"
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in state.items()}, str(path),
              metadata={"dreamprune.model": "durn_s", "dreamprune.config": json.dumps(config)})
    result = runner.invoke(app, ["evaluate", "--weights", str(path), "--input-dir",
                                 str(pair_dirs[0]), "--target-dir", str(pair_dirs[1])])
    assert result.exit_code == 2 and name in result.output and "NaN" in result.output
    assert nonfinite_entries({"a": torch.tensor([1.0, float("nan")])}) == ["a"]


# ------------------------------------------------------------------ 4 resume = same run
@pytest.mark.slow
def test_resume_refuses_a_changed_setting_and_reports_the_whole_run(runner, tmp_path: Path,
                                                                    pair_dirs) -> None:
    weights = _weights(tmp_path, "durn_s")
    out = tmp_path / "run"
    args = _pipeline_args(weights, out, pair_dirs)
    assert runner.invoke(app, args).exit_code == 0
    changed = runner.invoke(app, [*args, "--resume", str(out), "--flops-target", "0.4"])
    assert changed.exit_code == 2
    assert "flops_target was 0.58 in this run, now 0.4" in changed.output
    fewer = runner.invoke(app, ["pipeline", "--resume", str(out), "--steps", "1"])
    assert fewer.exit_code == 2 and "already did 2 joint steps" in fewer.output
    more = runner.invoke(app, ["pipeline", "--resume", str(out), "--steps", "4", "--json"])
    assert more.exit_code == 0, more.output
    data = json.loads(more.stdout)
    report = json.loads((out / "report.json").read_text())
    assert report["allocator"] == "lamp" and report["prune"]["allocator"] == "lamp"
    assert report["flops_target"] == 0.58 and report["resumed"] is True
    assert data["steps"] == 4 and data["seconds_per_step"] > 0
    assert "prune" in data["phases"] and data["seconds"] >= data["phases"]["dream_distill"]
    assert "allocator lamp, unstructured pruning, 4 joint steps" in (out / "report.md").read_text()
    assert "(0 ms/step)" not in (out / "report.md").read_text()


def test_dream_resume_refuses_a_changed_setting(runner, tmp_path: Path) -> None:
    """Further instance: dream --resume with another --size or --seed mixed two runs."""
    weights = _weights(tmp_path, "durn_s")
    out = tmp_path / "d"
    args = ["dream", "--weights", str(weights), "--save-dir", str(out), "--count", "2",
            "--steps", "2", *SMALL]
    assert runner.invoke(app, args).exit_code == 0
    (out / "dreams.safetensors").unlink()  # as if stopped before the end
    resized = runner.invoke(app, ["dream", "--resume", str(out), "--size", "48"])
    assert resized.exit_code == 2 and "size was 32 in this run, now 48" in resized.output
    reseeded = runner.invoke(app, ["--seed", "3", "dream", "--resume", str(out)])
    assert reseeded.exit_code == 2 and "seed was 0 in this run, now 3" in reseeded.output
    roomed = runner.invoke(app, ["dream", "--resume", str(out), "--scenes", "rooms"])
    assert roomed.exit_code == 2 and "scenes was 'leaves' in this run, now 'rooms'" in roomed.output
    wrong_kind = runner.invoke(app, ["pipeline", "--resume", str(out)])
    assert wrong_kind.exit_code == 2 and "written by 'dreamprune dream'" in wrong_kind.output


# ------------------------------------------------------------------ 5 inputs checked first
def test_hidden_and_appledouble_files_are_skipped(runner, tmp_path: Path, pair_dirs) -> None:
    inputs, targets = pair_dirs
    for folder in (inputs, targets):
        (folder / "._img0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
        (folder / ".hidden.png").write_bytes(b"not an image")
    result = runner.invoke(app, ["evaluate", "--model", "identity", "--input-dir", str(inputs),
                                 "--target-dir", str(targets), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["count"] == 3


def test_clean_dir_checked_before_dreaming(runner, tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    rng = np.random.default_rng(0)
    for index in range(2):
        save_rgb(clean / f"c{index}.png", rng.uniform(0, 1, (40, 40, 3)))
    (clean / "._c0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    weights = _weights(tmp_path, "durn_s")
    args = ["dream", "--weights", str(weights), "--count", "2", "--steps", "2", *SMALL,
            "--clean-dir", str(clean)]
    ok = runner.invoke(app, [*args, "--save-dir", str(tmp_path / "ok")])
    assert ok.exit_code == 0, ok.output
    data = (clean / "c1.png").read_bytes()
    (clean / "c1.png").write_bytes(data[: len(data) // 2])
    bad = runner.invoke(app, [*args, "--save-dir", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "c1.png" in bad.output and "--clean-dir" in bad.output
    assert not (tmp_path / "bad").exists()


def test_too_small_images_and_crop_border_named_before_any_work(runner, tmp_path: Path,
                                                                pair_dirs) -> None:
    inputs, targets = pair_dirs
    rng = np.random.default_rng(1)
    save_rgb(inputs / "tiny.png", rng.uniform(0, 1, (8, 8, 3)))
    save_rgb(targets / "tiny.png", rng.uniform(0, 1, (8, 8, 3)))
    save = tmp_path / "restored"
    args = ["evaluate", "--model", "identity", "--input-dir", str(inputs), "--target-dir",
            str(targets), "--save-dir", str(save)]
    small = runner.invoke(app, args)
    assert small.exit_code == 2 and "tiny.png (8x8, width x height)" in small.output
    assert "internal error" not in small.output and not save.exists()
    (inputs / "tiny.png").unlink()
    (targets / "tiny.png").unlink()
    cropped = runner.invoke(app, [*args, "--crop-border", "12"])
    assert cropped.exit_code == 2 and "img0.png (40x32, width x height)" in cropped.output
    assert "--crop-border" in cropped.output and not save.exists()


def test_pipeline_flops_size_checked_before_any_work(runner, tmp_path: Path, pair_dirs) -> None:
    """Further instance: a --flops-size the model cannot count failed after the teacher's
    evaluation and the calibration dreams."""
    weights = _weights(tmp_path, "hinet")
    out = tmp_path / "run"
    args = _pipeline_args(weights, out, pair_dirs)
    result = runner.invoke(app, [a if a != "64" else "40" for a in args])
    assert result.exit_code == 2 and "--flops-size 40: expected a multiple of 16" in result.output
    assert not out.exists()


# ------------------------------------------------------------------ 6 SIGTERM
def _stop_when_written(args: list[str], path: Path) -> tuple[int, str, str]:
    """Run the CLI, send SIGTERM once ``path`` exists (the loop is then under way), return
    (exit code, stdout, stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", "from dreamprune_cli.cli import main; main()",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 240
        while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stdout, stderr


@pytest.mark.slow
def test_sigterm_stops_the_pipeline_with_a_checkpoint(tmp_path: Path, pair_dirs) -> None:
    weights = _weights(tmp_path, "durn_s")
    out = tmp_path / "run"
    args = _pipeline_args(weights, out, pair_dirs, "--checkpoint-every", "1", "--json")
    args[args.index("--steps") + 1] = "100000"
    rc, stdout, stderr = _stop_when_written(args, out / "checkpoint.pt")
    assert rc == 143, stderr
    data = json.loads(stdout)  # --json: one object, naming what to resume from
    assert data["exit_code"] == 143 and data["checkpoint"] == str(out / "checkpoint.pt")
    assert data["resume"] == str(out) and "stopped by SIGTERM" in data["error"]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] >= 1
    assert "Traceback" not in stderr and not list(out.glob(".*.tmp*"))


@pytest.mark.slow
def test_sigterm_stops_dreaming_cleanly(tmp_path: Path) -> None:
    """Further instance: another long loop (dream) died at once with exit 143, no hint."""
    weights = _weights(tmp_path, "durn_s")
    out = tmp_path / "d"
    rc, stdout, stderr = _stop_when_written(
        ["dream", "--weights", str(weights), "--save-dir", str(out), "--count", "4",
         "--steps", "40", *SMALL, "--json"], out / "state.pt")
    assert rc == 143 and "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    data = json.loads(stdout)
    assert data["checkpoint"] == str(out / "state.pt") and data["resume"] == str(out)
    assert not list(out.glob(".*.tmp*"))
    done = _cli("dream", "--resume", str(out), "--json")  # every setting from run.json
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["count"] == 4


# ------------------------------------------------------------------ 7 no weights
def test_model_without_weights_is_refused(runner, tmp_path: Path, pair_dirs) -> None:
    pipeline = runner.invoke(app, ["pipeline", "--model", "aganet", "--flops-target", "0.58",
                                   "--out", str(tmp_path / "run")])
    assert pipeline.exit_code == 2 and "model 'aganet' has no bundled teacher" in pipeline.output
    assert "--weights" in pipeline.output and "--random-weights" in pipeline.output
    dream = runner.invoke(app, ["dream", "--model", "durn_s_p", "--save-dir",
                                str(tmp_path / "d")])
    assert dream.exit_code == 2 and "durn_s_p" in dream.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "d").exists()
    # further instance: evaluate scored a random network with exit 0
    args = ["evaluate", "--model", "durn_s", "--variant", "tiny", "--input-dir",
            str(pair_dirs[0]), "--target-dir", str(pair_dirs[1])]
    assert runner.invoke(app, args).exit_code == 2
    assert runner.invoke(app, [*args, "--random-weights"]).exit_code == 0


# ------------------------------------------------------------------ 8 --quiet
def test_quiet_prints_only_errors(tmp_path: Path, pair_dirs) -> None:
    args = ["prune", "--model", "ffa", "--variant", "tiny", "--flops-target", "0.6",
            "--allocator", "lamp", "--flops-size", "64", "--calibration", str(pair_dirs[0])]
    loud = _cli(*args, "--out", str(tmp_path / "a"))
    assert loud.returncode == 0 and "only used by the adaptive allocator" in loud.stderr
    quiet = _cli("--quiet", *args, "--out", str(tmp_path / "b"))
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_quiet_silences_library_warnings(tmp_path: Path, pair_dirs) -> None:
    """Further instance: Python warnings (torch, Pillow, a user's model) bypassed --quiet."""
    args = ["evaluate", "--model", f"{_model_file(tmp_path)}:Noisy", "--input-dir",
            str(pair_dirs[0]), "--target-dir", str(pair_dirs[1]), "--json"]
    loud = _cli(*args)
    assert loud.returncode == 0 and "a library warning" in loud.stderr
    quiet = _cli("--quiet", *args)
    assert quiet.returncode == 0 and quiet.stderr == "" and json.loads(quiet.stdout)["count"] == 3


# ------------------------------------------------------------------ issue 21.4 --json
def test_json_usage_error_is_one_line_and_one_object(tmp_path: Path) -> None:
    result = _cli("distill", "--eval-input-dir", str(tmp_path), "--json")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "No such option: --eval-input-dir" in result.stderr
    assert json.loads(result.stdout) == {"error": result.stderr.strip()[len("error: "):],
                                         "exit_code": 2}


def test_resume_refuses_a_folder_no_run_wrote(runner, tmp_path: Path) -> None:
    """Further instance of case 4 (found by a new-user check): ``--resume`` on a folder of
    images started a whole new run and wrote its files among them."""
    folder = tmp_path / "photos"
    save_rgb(folder / "a.png", np.zeros((16, 16, 3)))
    for command, extra in (("pipeline", []), ("distill", ["--student", "x.safetensors"]),
                           ("dream", [])):
        result = runner.invoke(app, [command, "--resume", str(folder), *extra])
        assert result.exit_code == 2, (command, result.output)
        assert f"not a dreamprune {command} folder" in result.output
    assert sorted(p.name for p in folder.iterdir()) == ["a.png"]
