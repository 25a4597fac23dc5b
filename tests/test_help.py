"""Help that answers questions: flags as --x/--no-x, defaults shown, required marked."""

from __future__ import annotations

import re

import pytest

from dreamprune_cli.cli import app
from dreamprune_cli.settings import PruneSettings


def _help(runner, *command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # help is wrapped at 80 columns


@pytest.mark.parametrize("command", ["prune", "dream", "distill", "pipeline", "evaluate",
                                     "export", "synth", "models"])
def test_flags_take_no_value(runner, command: str) -> None:
    text = _help(runner, command)
    assert "<bool>" not in text
    assert "--overwrite / --no-overwrite" in text or command == "models"


def test_prune_help_shows_defaults_and_required(runner) -> None:
    text = _help(runner, "prune")
    default = PruneSettings.model_fields["flops_target"].default
    assert re.search(rf"--flops-target <float> [^-]*\[default: {default}\]", text)
    assert "[default: adaptive]" in text and "[default: 256]" in text
    assert re.search(r"--out <path> [^-]*\[required\]", text)
    assert "--non-strict / --strict" in text
    assert "--trust-checkpoint / --no-trust-checkpoint" in text


def test_an_option_with_its_own_default_shows_only_it(runner) -> None:
    # `models --size` is not the dream size setting of the same name: one default, its own
    text = _help(runner, "models")
    assert re.search(r"--size <int> [^-]*\[default: 256\]", text)
    assert text.count("[default:") == 2  # --variant and --size, once each


def test_required_options_marked(runner) -> None:
    assert "[required, unless --resume]" in _help(runner, "dream")
    distill = _help(runner, "distill")
    assert "Required: --model (the teacher), --student and --out" in distill
    synth = _help(runner, "synth")
    assert synth.count("[required]") == 2


def test_root_help_shows_global_defaults_and_precedence(runner) -> None:
    text = _help(runner)
    assert "[default: auto]" in text and "--threads" in text
    assert "dreamprune config show --model NAME" in text


def test_no_eval_folder_message_in_distill(runner, tmp_path) -> None:
    """distill has no --eval-input-dir: its log must not name options it rejects."""
    import torch

    from dreamprune_cli.models.checkpoint import save_safetensors
    from dreamprune_cli.models.registry import build_model, model_config

    torch.manual_seed(0)
    weights = save_safetensors(tmp_path / "t.safetensors",
                               build_model("ffa", "tiny", blocks=1).state_dict(), "ffa",
                               model_config("ffa", "tiny", blocks=1))
    pruned = runner.invoke(app, ["prune", "--weights", str(weights), "--flops-target", "0.6",
                                 "--allocator", "lamp", "--flops-size", "64", "--out",
                                 str(tmp_path / "p")])
    assert pruned.exit_code == 0, pruned.output
    result = runner.invoke(app, ["distill", "--weights", str(weights), "--model", "ffa",
                                 "--student", str(tmp_path / "p" / "student.safetensors"),
                                 "--out", str(tmp_path / "d"), "--steps", "1", "--size", "32",
                                 "--batch-size", "2", "--device", "cpu", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "--eval-" not in result.output
    assert "scoring on the synthetic dehaze set" in result.output


def test_command_summaries_not_cut(runner) -> None:
    text = _help(runner)
    assert "..." not in text.replace("COMMAND [ARGS]...", "")
    assert "Prune to a FLOPs target, dream + distill, evaluate, report: the whole method." in text
