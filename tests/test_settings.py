"""Settings precedence, provenance and one-line validation errors from every source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dreamprune_cli.errors import UsageError
from dreamprune_cli.settings import FIELD_SECTION, Settings, preset_path, resolve_settings


def test_defaults_declared_for_later_subcommands() -> None:
    s = Settings()
    assert s.prune.flops_target == 0.58
    assert s.dream.noise_lr == 5e-2 and s.distill.student_lr == 1e-4
    assert s.distill.lambda_kd == 1.0 and s.dream.lambda_orth == 0.05
    assert s.dream.lambda_tv == 0.0 and s.dream.lambda_far == 0.0  # the paper's objective
    assert s.common.device == "auto"


def test_ffa_preset_sets_the_dream_image_terms() -> None:
    ffa = resolve_settings({"model": "ffa"}, env={})
    assert ffa.settings.dream.lambda_tv > 0 and ffa.settings.dream.lambda_far > 0
    assert ffa.sources["lambda_tv"].startswith("preset ")
    hinet = resolve_settings({"model": "hinet"}, env={}).settings
    assert hinet.dream.lambda_tv == 0.0 and hinet.dream.lambda_far == 0.0
    with pytest.raises(UsageError, match="lambda_far"):
        resolve_settings({"model": "ffa", "lambda_far": -1.0}, env={})


def test_field_names_unique_and_flag_shaped() -> None:
    for name in FIELD_SECTION:
        assert name == name.lower() and "-" not in name


def test_precedence_preset_config_env_flag(tmp_path: Path) -> None:
    assert preset_path("ffa") is not None
    config = tmp_path / "c.toml"
    config.write_text('seed = 5\nsize = 48\n[prune]\nflops_target = 0.5\nallocator = "lamp"\n')
    env = {"DREAMPRUNE_FLOPS_TARGET": "0.45", "DREAMPRUNE_ALLOCATOR": "erk"}
    r = resolve_settings({"model": "ffa", "allocator": "global"}, config=config, env=env)
    s = r.settings
    assert s.common.seed == 5 and r.sources["seed"] == f"config {config}"
    assert s.prune.flops_target == 0.45 and r.sources["flops_target"] == "env DREAMPRUNE_FLOPS_TARGET"
    assert s.prune.allocator == "global" and r.sources["allocator"] == "flag --allocator"
    assert s.dream.size == 48
    assert s.evaluate.metric_space == "rgb" and r.sources["metric_space"].startswith("preset ")
    assert r.sources["noise_lr"].startswith("preset ") or r.sources["noise_lr"] == "default"
    assert r.sources["count"] == "default"


def test_config_overrides_preset(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[evaluate]\nmetric_space = "y"\n')
    r = resolve_settings({"model": "ffa"}, config=config, env={})
    assert r.settings.evaluate.metric_space == "y"


def test_model_from_env_selects_preset() -> None:
    r = resolve_settings({}, env={"DREAMPRUNE_MODEL": "hinet"})
    assert r.settings.common.model == "hinet" and r.settings.evaluate.metric_space == "y"


def test_default_model_and_config_env_var(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("steps = 7\n")
    r = resolve_settings({}, env={"DREAMPRUNE_CONFIG": str(config)}, default_model="ffa")
    assert r.settings.common.model == "ffa" and r.sources["model"] == "default"
    assert r.settings.dream.steps == 7


def test_list_from_env() -> None:
    r = resolve_settings({}, env={"DREAMPRUNE_EXCLUDE": "a.*, b"})
    assert r.settings.prune.exclude == ["a.*", "b"]
    r = resolve_settings({}, env={"DREAMPRUNE_EXCLUDE": '["x"]'})
    assert r.settings.prune.exclude == ["x"]


def test_channel_multiple_from_config_env_and_flag(tmp_path: Path) -> None:
    """``channel_multiple`` is an ordinary field: config file < environment < flag."""
    assert Settings().prune.channel_multiple == 1
    config = tmp_path / "c.toml"
    config.write_text("[prune]\nchannel_multiple = 8\n")
    r = resolve_settings({}, config=config, env={})
    assert r.settings.prune.channel_multiple == 8
    assert r.sources["channel_multiple"] == f"config {config}"
    env = {"DREAMPRUNE_CHANNEL_MULTIPLE": "16"}
    r = resolve_settings({}, config=config, env=env)
    assert r.settings.prune.channel_multiple == 16
    assert r.sources["channel_multiple"] == "env DREAMPRUNE_CHANNEL_MULTIPLE"
    r = resolve_settings({"channel_multiple": 4}, config=config, env=env)
    assert r.settings.prune.channel_multiple == 4
    assert r.sources["channel_multiple"] == "flag --channel-multiple"
    top_level = tmp_path / "top.toml"
    top_level.write_text("channel_multiple = 32\n")
    assert resolve_settings({}, config=top_level, env={}).settings.prune.channel_multiple == 32


def test_inputs_from_config_env_and_flag(tmp_path: Path) -> None:
    """``inputs`` (the joint loop's student inputs): default dreams; config file < environment
    < flag; a run records it as a defining setting of distill and pipeline."""
    from dreamprune_cli.run_record import DEFINING

    assert Settings().distill.inputs == "dreams"
    assert resolve_settings({"model": "ffa"}, env={}).sources["inputs"] == "default"
    config = tmp_path / "c.toml"
    config.write_text('[distill]\ninputs = "mixed"\n')
    r = resolve_settings({}, config=config, env={})
    assert r.settings.distill.inputs == "mixed" and r.sources["inputs"] == f"config {config}"
    env = {"DREAMPRUNE_INPUTS": "synthetic"}
    r = resolve_settings({}, config=config, env=env)
    assert r.settings.distill.inputs == "synthetic"
    assert r.sources["inputs"] == "env DREAMPRUNE_INPUTS"
    r = resolve_settings({"inputs": "dreams"}, config=config, env=env)
    assert r.settings.distill.inputs == "dreams" and r.sources["inputs"] == "flag --inputs"
    assert "inputs" in DEFINING["distill"] and "inputs" in DEFINING["pipeline"]
    assert "inputs" not in DEFINING["dream"]


@pytest.mark.parametrize("flags, env, config_text, expected", [
    ({}, {"DREAMPRUNE_FLOPS_TARGET": "1.5"}, None,
     "invalid flops_target='1.5' (from env DREAMPRUNE_FLOPS_TARGET)"),
    ({}, {"DREAMPRUNE_SEED": "abc"}, None, "invalid seed='abc' (from env DREAMPRUNE_SEED)"),
    ({"flops_target": 0.0}, {}, None, "invalid flops_target=0.0 (from flag --flops-target)"),
    ({"model": "nonexistent"}, {}, None, "invalid model='nonexistent' (from flag --model)"),
    ({"device": "gpu"}, {}, None, "invalid device='gpu' (from flag --device)"),
    ({"min_keep": 1.5}, {}, None, "invalid min_keep=1.5 (from flag --min-keep)"),
    ({"channel_multiple": 0}, {}, None,
     "invalid channel_multiple=0 (from flag --channel-multiple)"),
    ({}, {"DREAMPRUNE_CHANNEL_MULTIPLE": "sixteen"}, None,
     "invalid channel_multiple='sixteen' (from env DREAMPRUNE_CHANNEL_MULTIPLE)"),
    ({}, {}, "[prune]\nchannel_multiple = 2.5\n", "invalid channel_multiple=2.5 (from config"),
    ({}, {}, "[prune]\nflops_target = 2\n", "invalid flops_target=2 (from config"),
    ({}, {}, 'noise_lr = "fast"\n', "invalid noise_lr='fast' (from config"),
    ({"inputs": "noise"}, {}, None, "invalid inputs='noise' (from flag --inputs)"),
    ({}, {"DREAMPRUNE_INPUTS": "synth"}, None,
     "invalid inputs='synth' (from env DREAMPRUNE_INPUTS)"),
    ({}, {}, "[distill]\ninputs = 1\n", "invalid inputs=1 (from config"),
    ({"reconstruct_ridge": -0.1}, {}, None,
     "invalid reconstruct_ridge=-0.1 (from flag --reconstruct-ridge)"),
    ({}, {"DREAMPRUNE_RECONSTRUCT_SIZE": "4"}, None,
     "invalid reconstruct_size='4' (from env DREAMPRUNE_RECONSTRUCT_SIZE): Input should be "
     "greater than or equal to 8"),
    ({}, {}, "bogus = 1\n", "unknown key 'bogus'"),
    ({}, {}, "[prune]\nsize = 3\n", "unknown key 'prune.size'"),
    ({}, {}, "flops_target = = 1\n", "malformed TOML"),
])
def test_invalid_values_one_line(tmp_path: Path, flags: dict, env: dict,
                                 config_text: str | None, expected: str) -> None:
    config = None
    if config_text is not None:
        config = tmp_path / "bad.toml"
        config.write_text(config_text)
    with pytest.raises(UsageError) as info:
        resolve_settings(flags, config=config, env=env)
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert "Value error" not in message  # pydantic's prefix is not shown to users
    assert info.value.exit_code == 2


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        resolve_settings({}, config=tmp_path / "missing.toml", env={})


def test_every_registered_model_has_a_consistent_preset() -> None:
    from dreamprune_cli.models import get_model_info, list_models

    for name in list_models():
        assert preset_path(name) is not None, name
        r = resolve_settings({"model": name}, env={})
        info = get_model_info(name)
        assert r.settings.evaluate.metric_space in (None, info.metric_space), name
        assert r.settings.dream.size % info.size_multiple == 0, name


@pytest.mark.parametrize(("name", "space"), [("prenet", "y"), ("gcanet", "rgb")])
def test_real_teacher_presets_hold_the_benchmarked_settings(name: str, space: str) -> None:
    """The presets of the authors' networks carry what bench/real_table1.py chose on its
    synthetic validation set (the adaptive allocator) and the field's metric space."""
    resolved = resolve_settings({"model": name}, env={})
    s = resolved.settings
    assert s.prune.allocator == "adaptive" and s.prune.flops_target == 0.58
    assert resolved.sources["allocator"].endswith(f"presets/{name}.toml")
    assert s.evaluate.metric_space == space
    assert (s.dream.noise_lr, s.dream.lambda_orth, s.distill.student_lr) == (0.05, 0.05, 1e-4)
    # both repair their students (GCANet on 64 images of 128 px, not distilled afterwards)
    repair = (s.prune.reconstruct, s.prune.reconstruct_count, s.prune.reconstruct_size,
              s.prune.reconstruct_ridge, s.pipeline.prune_only)
    assert repair == ((True, 64, 128, 0.1, True) if name == "gcanet"
                      else (True, 32, 128, 0.1, False))


def test_recovery_settings_precedence_and_record(tmp_path: Path, monkeypatch) -> None:
    """The student's schedule and the dreams' start are ordinary fields (defaults: the
    method): preset < config file < environment < flag, shown for ``ema_decay``; every one
    defines a distill and pipeline run (run.json, refused changes on resume)."""
    from dreamprune_cli import settings as settings_module
    from dreamprune_cli.run_record import DEFINING

    method = Settings()
    assert (method.distill.lr_schedule, method.distill.warmup_steps,
            method.distill.lr_min_ratio, method.distill.ema_decay,
            method.dream.dream_init) == ("constant", 0, 0.01, 0.0, "noise")
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "ffa.toml").write_text("[distill]\nema_decay = 0.9\n")
    monkeypatch.setattr(settings_module, "presets_dir", lambda: presets)
    r = resolve_settings({"model": "ffa"}, env={})
    assert r.settings.distill.ema_decay == 0.9 and r.sources["ema_decay"].startswith("preset ")
    config = tmp_path / "c.toml"
    config.write_text("[distill]\nema_decay = 0.99\nlr_schedule = \"cosine\"\n"
                      "[dream]\ndream_init = \"synthetic\"\n")
    r = resolve_settings({"model": "ffa"}, config=config, env={})
    assert r.settings.distill.ema_decay == 0.99 and r.sources["ema_decay"] == f"config {config}"
    assert r.settings.distill.lr_schedule == "cosine"
    assert r.settings.dream.dream_init == "synthetic"
    env = {"DREAMPRUNE_EMA_DECAY": "0.995", "DREAMPRUNE_WARMUP_STEPS": "20"}
    r = resolve_settings({"model": "ffa"}, config=config, env=env)
    assert r.settings.distill.ema_decay == 0.995
    assert r.sources["ema_decay"] == "env DREAMPRUNE_EMA_DECAY"
    assert r.settings.distill.warmup_steps == 20
    r = resolve_settings({"model": "ffa", "ema_decay": 0.5}, config=config, env=env)
    assert r.settings.distill.ema_decay == 0.5 and r.sources["ema_decay"] == "flag --ema-decay"
    for name in ("lr_schedule", "warmup_steps", "lr_min_ratio", "ema_decay", "dream_init"):
        assert name in DEFINING["distill"] and name in DEFINING["pipeline"], name
    assert "dream_init" in DEFINING["dream"]
    for flags, message in (({"ema_decay": 1.0}, "invalid ema_decay=1.0 (from flag --ema-decay)"),
                           ({"warmup_steps": -1}, "invalid warmup_steps=-1"),
                           ({"lr_schedule": "step"}, "invalid lr_schedule='step'"),
                           ({"dream_init": "gray"}, "invalid dream_init='gray'")):
        with pytest.raises(UsageError, match=re.escape(message)):
            resolve_settings(flags, env={})


def test_the_granularity_help_is_generated_from_the_granularities() -> None:
    """--granularity's help names every granularity with its summary, in their order, and the
    channel allocators (one definition: dreamprune_cli.prune)."""
    from dreamprune_cli.prune import CHANNEL_ALLOCATORS, GRANULARITIES, GRANULARITY_SUMMARIES
    from dreamprune_cli.settings import PruneSettings

    text = PruneSettings.model_fields["granularity"].description
    positions = [text.index(f"{name} ({GRANULARITY_SUMMARIES[name]}") for name in GRANULARITIES]
    assert positions == sorted(positions)
    assert f"allocators {', '.join(CHANNEL_ALLOCATORS)})" in text
