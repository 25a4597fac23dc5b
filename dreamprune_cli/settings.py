"""One validated settings tree shared by every subcommand, and where each value came from.

Each field is defined once here: its type, range, default and description; the command line
declares its options from these fields (the description is the option's help).

Sources, lowest to highest precedence::

    built-in defaults < presets/<model>.toml < --config FILE.toml < DREAMPRUNE_<FIELD> < flags

Field names are unique across the tree and equal the flag names with ``_`` (``flops_target``
<-> ``--flops-target`` <-> ``DREAMPRUNE_FLOPS_TARGET``). TOML files may put a field at the top
level or under its section (``[prune] flops_target = 0.5``). Any invalid value is reported as
one line naming the field, the value and its source.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dreamprune_cli.errors import UsageError
from dreamprune_cli.run_record import RunRecord, same_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from dreamprune_cli.prune import (ALLOCATORS, CHANNEL_ALLOCATORS, GRANULARITIES,
                                  GRANULARITY_SUMMARIES)
from dreamprune_cli.prune.spec import (DEFAULT_CHANNEL_ALLOCATOR, DEFAULT_RECONSTRUCT_COUNT,
                                      DEFAULT_RECONSTRUCT_RIDGE, DEFAULT_RECONSTRUCT_SIZE,
                                      PruneSpec)

log = logging.getLogger(__name__)

ENV_PREFIX = "DREAMPRUNE_"
Allocator = Literal[ALLOCATORS]  # type: ignore[valid-type]  # the names, defined once
Granularity = Literal[GRANULARITIES]  # type: ignore[valid-type]

DREAM_STEPS = 200
"""Default ``steps`` of ``dream``: Adam steps per batch of dreams."""
JOINT_STEPS = 400
"""Default ``steps`` of ``distill`` and ``pipeline``: joint dream + distill steps in all."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CommonSettings(_Section):
    """Fields every subcommand reads."""

    model: str | None = Field(
        None,
        description="Registered model name (see 'dreamprune models') or a custom "
                    "'package.module:factory' / 'file.py:Class'.")
    variant: str = Field(
        "official", description="Model variant (official, tiny) when the weights carry no config.")
    model_kwargs: dict[str, Any] = Field(default_factory=dict,
                                         description="constructor overrides (presets, config)")
    weights: Path | None = Field(
        None, description="Checkpoint: the authors' .pth/.pt/.pk/.pkl/.ckpt or .safetensors.")
    random_weights: bool = Field(
        False,
        description="Allow a model without weights (random initialisation; for tests and smoke "
                    "runs).")
    non_strict: bool = Field(
        False,
        description="Load the weights that fit, skipping missing/unexpected keys (default: "
                    "strict).")
    trust_checkpoint: bool = Field(
        False, description="Allow full unpickling (may run code from the file; default: no).")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    threads: int | None = Field(
        None, ge=1,
        description="CPU threads for PyTorch. Default: OMP_NUM_THREADS if set, else the idle "
                    "allotted CPUs but one, at least 1 (1 on a 2-core machine).")
    seed: int = Field(0, ge=0, description="Random seed.")
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto", description="CUDA mixed precision: auto, off, bf16, fp16.")
    channels_last: Literal["auto", "on", "off"] = Field(
        "auto", description="CUDA memory format: auto, on, off.")
    overwrite: bool = Field(False, description="Replace existing output files (default: no).")
    save_dir: Path | None = Field(None, description="Write restored PNGs here.")
    out: Path | None = Field(None, description="Output folder. [required, unless --resume]")
    resume: Path | None = Field(None, description="Continue the run in this folder.")

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError("expected auto, cpu, mps, cuda or cuda:N")
        return value

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str | None) -> str | None:
        if value is None or ":" in value:
            return value
        from dreamprune_cli.models.registry import list_models

        if value not in list_models():
            raise ValueError(f"unknown model; expected one of {', '.join(list_models())} "
                             "or 'module:factory'")
        return value


class EvaluateSettings(_Section):
    input_dir: Path | None = Field(None, description="Degraded images.")
    target_dir: Path | None = Field(None, description="Clean targets (paired by --pairing).")
    metric_space: Literal["y", "rgb"] | None = Field(
        None, description="y (BT.601 luma) or rgb; default: the model's.")
    crop_border: int | None = Field(None, ge=0, description="Pixels cropped per side.")
    ssim_variant: Literal["basicsr", "matlab"] | None = Field(
        None,
        description="SSIM: basicsr (valid window, BasicSR, Wang's ssim.m) or matlab (MATLAB's "
                    "built-in ssim on 0-255 doubles); default: the model's.")
    quantize: Literal["round", "truncate"] | None = Field(
        None,
        description="Outputs to 8 bits before scoring: round, or truncate (uint8(255 x), PReNet's"
                    " test script); default: the model's.")
    pairing: Literal["stem", "rain100", "sots"] = Field(
        "stem",
        description="How inputs pair with targets: stem (same names, default), rain100 (rain-N "
                    "with norain-N) or sots (hazy S_L with clean S, centre-cropped to the hazy "
                    "size).")
    tile: int | None = Field(
        None, ge=1,
        description="Restore in tiles of N x N px (bounded memory for large images); default: "
                    "whole images.")
    tile_overlap: int = Field(
        32, ge=0,
        description="Context in px restored around each tile and cropped away (default 32).")
    limit: int | None = Field(None, ge=1, description="Only the first N pairs.")


def _granularity_help() -> str:
    """``--granularity``'s help: each granularity with its summary
    (:data:`~dreamprune_cli.prune.GRANULARITY_SUMMARIES`), the channel allocators named."""
    parts = [f"{name} ({summary}"
             + (f"; allocators {', '.join(CHANNEL_ALLOCATORS)})" if name == "channel" else ")")
             for name, summary in GRANULARITY_SUMMARIES.items()]
    return ", ".join(parts[:-1]) + f" or {parts[-1]}."


class PruneSettings(_Section):
    flops_target: float = Field(
        0.58, description="Fraction of the dense MACs to keep, in (0, 1]; 0.58 keeps 58%.")
    latency_target: float | None = Field(
        None, gt=0.0, le=1.0,
        description="Instead of --flops-target, with a structured --granularity (channel, depth, "
                    "depth+channel): the student's measured time over the teacher's, on this "
                    "machine, at 1x3xSxS (S = --flops-size); planned on MACs, then measured and "
                    "re-planned until at or below it.")
    allocator: Allocator = Field(
        "adaptive", description=f"Layer-wise sparsity: {', '.join(ALLOCATORS)}.")
    granularity: Granularity = Field(
        "unstructured",
        description=_granularity_help())
    channel_multiple: int = Field(
        1, ge=1,
        description="Only with --granularity channel or depth+channel: every channel group "
                    "wider than N keeps a "
                    "multiple of N channels, so that oneDNN/cuDNN channel blocks are full (16: "
                    "FFA-Net's students ran at 1.09x their MAC ratio, not 1.68x); 1: any count.")
    flops_size: int = Field(
        256, ge=8, description="Square input side S at which MACs are counted (3 x S x S).")
    exclude: list[str] = Field(
        default_factory=list,
        description="Module-name glob kept dense (repeatable); adds to the model's defaults.")
    calibration: Path | None = Field(
        None, description="Degraded images for the adaptive allocator (default: synthetic ones).")
    min_keep: float = Field(
        0.1, ge=0.0, le=1.0,
        description="Adaptive allocator: least fraction of every layer kept unless the target "
                    "needs less (default 0.1).")
    calibration_count: int = Field(
        4, ge=1, description="Calibration patches for the adaptive allocator.")
    calibration_size: int = Field(64, ge=8, description="Side of the calibration patches.")
    depth_calibration_size: int = Field(
        256, ge=8,
        description="Side of the calibration images on which --granularity depth and "
                    "depth+channel measure drift (default 256: small crops misrank blocks of "
                    "networks with instance norms).")
    default_exclude: bool = Field(
        True, description="Keep the model's first/last convolutions dense (default: yes).")
    reconstruct: bool = Field(
        False,
        description="After the cut (any --granularity): refit each layer by ridge least "
                    "squares to the teacher's output at the channels it kept, in forward "
                    "order, on synthetic degraded images of side --reconstruct-size (or, "
                    "on prune, --calibration patches); masked layers keep their masks, each "
                    "output channel solved over its kept weights; a layer keeps its weights "
                    "when the fit is not better.")
    reconstruct_count: int = Field(
        DEFAULT_RECONSTRUCT_COUNT, ge=1,
        description=f"--reconstruct: calibration images (default {DEFAULT_RECONSTRUCT_COUNT}).")
    reconstruct_size: int = Field(
        DEFAULT_RECONSTRUCT_SIZE, ge=8,
        description=f"--reconstruct: side of the calibration images (px, default "
                    f"{DEFAULT_RECONSTRUCT_SIZE}).")
    reconstruct_ridge: float = Field(
        DEFAULT_RECONSTRUCT_RIDGE, ge=0.0, le=1e3,
        description=f"--reconstruct: ridge strength, relative to the mean of the diagonal of "
                    f"each layer's X^T X, pulling the weights towards their pruned values "
                    f"(default {DEFAULT_RECONSTRUCT_RIDGE:g}; 0: plain least squares).")

    @field_validator("flops_target")
    @classmethod
    def _check_fraction(cls, value: float) -> float:
        """A fraction in (0, 1]; a percentage (``58``) is named with the fraction it means."""
        if 0.0 < value <= 1.0:
            return value
        hint = f"; did you mean {value / 100:g}?" if 1.0 < value <= 100.0 else ""
        raise ValueError(f"expected a fraction in (0, 1]{hint}")


class DreamSettings(_Section):
    count: int = Field(16, ge=1, description="Dreamed images to produce.")
    size: int = Field(64, ge=8, description="Side of the dreamed images, and of the synthetic "
                                            "inputs of --inputs synthetic (px).")
    batch_size: int = Field(8, ge=1, description="Images optimised together.")
    steps: int | None = Field(
        None, ge=1,
        description=f"Steps (dream: per batch, default {DREAM_STEPS}; distill/pipeline: joint "
                    f"steps, default {JOINT_STEPS}).")
    round_steps: int = Field(50, ge=1, description="Steps before new noise and targets.")
    clean_dir: Path | None = Field(
        None, description="Clean images to dream towards, and under the synthetic inputs' "
                          "rain or haze (default: procedural scenes).")
    scenes: Literal["leaves", "rooms"] = Field(
        "leaves",
        description="Procedural clean scenes when no --clean-dir: leaves (dead-leaves "
                    "shapes, default) or rooms (indoor rooms; haze follows their depth).")
    noise_lr: float = Field(5e-2, gt=0.0, description="Adam learning rate of the dreams.")
    lambda_orth: float = Field(0.05, ge=0.0, description="Weight of the diversity loss.")
    lambda_tv: float = Field(
        0.0, ge=0.0, description="Weight of a total-variation prior on the dreams (0: off).")
    lambda_far: float = Field(
        0.0, ge=0.0,
        description="Weight of the reward for dreams far from their clean target at coarse scale "
                    "(0: off).")
    far_pool: int = Field(8, ge=1, description="block size (px) of that coarse distance")
    representation: Literal["gram", "gap"] = Field(
        "gram", description="L_orth representation: gram or gap.")
    dream_init: Literal["noise", "synthetic"] = Field(
        "noise",
        description="What each round of dreams starts from: noise (the method, default), or "
                    "synthetic degraded images of the teacher's task (the --inputs synthetic "
                    "source), dreamed towards their clean scenes.")

    @property
    def dream_steps(self) -> int:
        """``dream``'s steps per batch: ``steps``, else :data:`DREAM_STEPS`."""
        return self.steps or DREAM_STEPS

    @property
    def joint_steps(self) -> int:
        """``distill``/``pipeline``'s joint steps: ``steps``, else :data:`JOINT_STEPS`."""
        return self.steps or JOINT_STEPS


class DistillSettings(_Section):
    student: Path | None = Field(
        None, description="Pruned student: DIR/student.safetensors written by 'prune'. [required]")
    dreams: Path | None = Field(
        None, description="A folder written by 'dream' (offline); default: dream online.")
    student_lr: float = Field(1e-4, gt=0.0, description="Adam learning rate of the student.")
    lambda_kd: float = Field(1.0, gt=0.0, description="Weight of the distillation loss.")
    inputs: Literal["dreams", "synthetic", "mixed", "adversarial"] = Field(
        "dreams",
        description="The student's inputs in the joint loop: dreams (the method, default "
                    "unless the model's preset says otherwise: prenet and gcanet use synthetic), "
                    "synthetic (procedural degraded images of the teacher's task, a fresh batch "
                    "every step; no teacher inversion), mixed (each batch half dreams, half "
                    "synthetic) or adversarial (synthetic, half of each batch moved within "
                    "--adversarial-eps towards where student and teacher disagree most).")
    adversarial_eps: float = Field(
        0.03, gt=0.0, le=1.0,
        description="--inputs adversarial: the L-infinity radius of the move, in image "
                    "intensities (inputs lie in [0, 1]; 0.03 is about 8/255).")
    adversarial_steps: int = Field(
        1, ge=1,
        description="--inputs adversarial: gradient-ascent steps of the search per batch "
                    "(each a student and a teacher forward and backward).")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="The student's learning rate over the run: constant (the method, default) "
                    "or cosine (decays to --lr-min-ratio of --student-lr over the run's steps, "
                    "after --warmup-steps).")
    warmup_steps: int = Field(
        0, ge=0,
        description="Linear warm-up of the student's learning rate over the first N steps "
                    "(0: none).")
    lr_min_ratio: float = Field(
        0.01, ge=0.0, le=1.0,
        description="Cosine schedule: the learning rate's floor, as a fraction of --student-lr.")
    ema_decay: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="Keep an exponential moving average of the student's weights with this "
                    "decay per step, and save and score it as the student (0: off, default; "
                    "e.g. 0.999).")
    lambda_feat: float = Field(
        0.0, ge=0.0,
        description="Weight of a feature-distillation term: the mean L1 distance between "
                    "each student convolution/linear layer's output and the teacher's same "
                    "layer at the channels the student kept (FitNets-style hints; 0: off, "
                    "default).")
    feat_layers: list[str] = Field(
        default_factory=list,
        description="Module-name glob of the layers --lambda-feat matches (repeatable; "
                    "default: every convolution and linear layer both networks have).")
    checkpoint_every: int = Field(100, ge=1, description="Steps between checkpoints.")


class PipelineSettings(_Section):
    calibration_source: Literal["dreams", "synthetic"] = Field(
        "dreams",
        description="Adaptive calibration: dreams (default) or synthetic degraded images.")
    calibration_steps: int = Field(
        50, ge=1, description="Dreaming steps for the adaptive allocator's calibration.")
    eval_input_dir: Path | None = Field(None, description="Evaluation inputs.")
    eval_target_dir: Path | None = Field(None, description="Evaluation targets.")
    grid_crop: int | None = Field(
        None, ge=1,
        description="grid.png shows the centred N x N crop of each image (detail) instead of "
                    "the whole image (default: whole images).")
    prune_only: bool = Field(
        False,
        description="Prune (and --reconstruct), evaluate and report, without dreaming or "
                    "distillation: the student is the pruned one (refused beside an explicit "
                    "--steps).")
    teacher_cache: bool = Field(  # not "cache": $DREAMPRUNE_CACHE is the cache folder
        True,
        description="Reuse the teacher's scores on the evaluation folders from the user "
                    "cache (same weights file, images and protocol); --no-cache scores it "
                    "again.")


class SynthSettings(_Section):
    """``dreamprune synth`` (count, size and clean_dir are the dream section's fields)."""

    task: Literal["derain", "raindrop", "dehaze"] | None = Field(
        None,
        description="Degradation: derain (rain streaks), raindrop (drops on glass) or dehaze. "
                    "[required]")


class Settings(_Section):
    """The whole tree; ``Settings().prune.flops_target`` etc."""

    common: CommonSettings = Field(default_factory=CommonSettings)
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    prune: PruneSettings = Field(default_factory=PruneSettings)
    dream: DreamSettings = Field(default_factory=DreamSettings)
    distill: DistillSettings = Field(default_factory=DistillSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    synth: SynthSettings = Field(default_factory=SynthSettings)


SECTIONS: dict[str, type[_Section]] = {
    name: info.annotation for name, info in Settings.model_fields.items()  # type: ignore[misc]
}
FIELD_SECTION: dict[str, str] = {
    fname: section for section, cls in SECTIONS.items() for fname in cls.model_fields
}


@dataclass
class ResolvedSettings:
    """Validated settings plus the source of every field (``default``, ``preset ...``)."""

    settings: Settings
    sources: dict[str, str] = field(default_factory=dict)

    def user_set(self, name: str) -> bool:
        """Whether the user chose field ``name`` (flag, environment or config file), not a
        default, a model's preset or the record of a resumed run: only such a setting is
        worth a warning that it is ignored."""
        source = self.sources.get(name, "default")
        return not (source == "default" or source.startswith(("preset ", "run ")))

    def flat(self) -> dict[str, Any]:
        """Field name -> value, JSON-ready."""
        out = {}
        for section in SECTIONS:
            values = getattr(self.settings, section).model_dump(mode="json")
            out.update(values)
        return out


def presets_dir() -> Path:
    """Folder of the bundled presets (installed package data, else the source tree's)."""
    try:
        packaged = resources.files("dreamprune_cli.presets")
        if packaged.is_dir():
            return Path(str(packaged))
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "presets"


def preset_path(model: str) -> Path | None:
    """``presets/<model>.toml`` if the model has one."""
    path = presets_dir() / f"{model}.toml"
    return path if path.is_file() else None


def _read_toml(path: Path, label: str) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"{label} {path}: no such file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{label} {path}: malformed TOML: {exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{label} {path}: not UTF-8 text") from None


def _flatten_toml(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """TOML tree -> field name -> value; unknown keys or sections are errors."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, Mapping) and key != "model_kwargs":
            for sub_key, sub_value in value.items():
                if FIELD_SECTION.get(sub_key) != key:
                    raise UsageError(f"{source}: unknown key '{key}.{sub_key}' "
                                     f"(fields of [{key}]: {', '.join(SECTIONS[key].model_fields)})")
                flat[sub_key] = sub_value
        elif key in FIELD_SECTION:
            flat[key] = value
        else:
            raise UsageError(f"{source}: unknown key '{key}' (known sections: "
                             f"{', '.join(SECTIONS)}; see 'dreamprune config show')")
    return flat


def _parse_env_value(name: str, raw: str) -> Any:
    """Environment strings -> values pydantic can validate (lists as JSON or comma lists)."""
    section = FIELD_SECTION[name]
    annotation = SECTIONS[section].model_fields[name].annotation
    if "list" in str(annotation) or "dict" in str(annotation):
        text = raw.strip()
        if text.startswith(("[", "{")):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return raw
        return [part.strip() for part in text.split(",") if part.strip()]
    return raw


def environment_values(env: Mapping[str, str]) -> dict[str, Any]:
    """``DREAMPRUNE_<FIELD>`` variables -> field values (empty means unset)."""
    values = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or raw == "":
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name in FIELD_SECTION:
            values[name] = _parse_env_value(name, raw)
    return values


def _source_label(kind: str, name: str, path: Path | None = None) -> str:
    if kind == "env":
        return f"env {ENV_PREFIX}{name.upper()}"
    if kind == "flag":
        return f"flag --{name.replace('_', '-')}"
    if kind in ("preset", "config", "run"):
        return f"{kind} {path}"
    return kind


def resolve_settings(flags: Mapping[str, Any] | None = None, config: Path | None = None,
                     env: Mapping[str, str] | None = None,
                     default_model: str | None = None, default_model_source: str = "default",
                     run_record: RunRecord | None = None) -> ResolvedSettings:
    """Merge all sources into validated :class:`Settings` with per-field provenance.

    Args:
        flags: values given on the command line (``None`` values mean "not given").
        config: a ``--config`` TOML file.
        env: the environment (default ``os.environ``); ``DREAMPRUNE_CONFIG`` names a config
            file when ``config`` is not given.
        default_model: the model when no source names one (the one a weights file names, else
            the subcommand's default); ``default_model_source`` says which, for ``config show``.
        run_record: the ``run.json`` of the folder given to ``--resume``: its settings sit
            above the preset (the resumed run keeps them); a config, environment or flag value
            that changes one of its defining settings is an error.

    Raises:
        UsageError: one line naming the field, the bad value and its source; or, on resume,
            the field whose value would change and both values.
    """
    env = os.environ if env is None else env
    flag_values = {k: v for k, v in (flags or {}).items() if v is not None}
    unknown = sorted(set(flag_values) - set(FIELD_SECTION))
    if unknown:
        raise ValueError(f"unknown settings fields: {unknown}")
    if config is None and env.get(f"{ENV_PREFIX}CONFIG"):
        config = Path(env[f"{ENV_PREFIX}CONFIG"])
    config_values = _flatten_toml(_read_toml(config, "--config"), f"config {config}") \
        if config else {}
    env_values = environment_values(env)

    layers: list[tuple[str, Path | None, dict[str, Any]]] = []
    recorded: dict[str, Any] = {}
    if run_record is not None:
        recorded = dict(run_record.settings)
        unknown = sorted(set(recorded) - set(FIELD_SECTION))
        if unknown:
            raise UsageError(f"{run_record.path}: unknown settings {', '.join(unknown)}")
    model = flag_values.get("model") or env_values.get("model") \
        or config_values.get("model") or recorded.get("model")
    model_source = None
    if model is None and default_model is not None:
        model, model_source = default_model, default_model_source
    preset = preset_path(model) if isinstance(model, str) and ":" not in model else None
    if preset is not None:
        preset_values = _flatten_toml(_read_toml(preset, "preset"), f"preset {preset}")
        preset_values.pop("model", None)
        layers.append(("preset", preset, preset_values))
    if run_record is not None:
        layers.append(("run", run_record.path, recorded))
    layers += [("config", config, config_values), ("env", None, env_values),
               ("flag", None, flag_values)]

    merged: dict[str, Any] = {}
    sources = {name: "default" for name in FIELD_SECTION}
    if model_source is not None:
        merged["model"], sources["model"] = model, model_source
    for kind, path, values in layers:
        for name, value in values.items():
            merged[name] = value
            sources[name] = _source_label(kind, name, path)

    tree: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for name, value in merged.items():
        tree[FIELD_SECTION[name]][name] = value
    try:
        settings = Settings.model_validate(tree)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = next((str(p) for p in reversed(error["loc"]) if str(p) in FIELD_SECTION),
                    str(error["loc"][-1]))
        value = merged.get(name, error.get("input"))
        message = str(error["msg"]).removeprefix("Value error, ")  # pydantic's own prefix
        message += _closest_choice(error, value)
        raise UsageError(f"invalid {name}={value!r} (from {sources.get(name, 'default')}): "
                         f"{message}") from None
    resolved = ResolvedSettings(settings=settings, sources=sources)
    if run_record is not None:
        _check_unchanged(resolved, run_record)
    return resolved


def _closest_choice(error: Mapping[str, Any], value: Any) -> str:
    """``"; did you mean 'dehaze'?"`` when a string missed a fixed choice (pydantic's
    ``literal_error``) by a little (:func:`difflib.get_close_matches`), else ``""``."""
    if error.get("type") != "literal_error" or not isinstance(value, str):
        return ""
    choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
    close = difflib.get_close_matches(value.lower(), choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def resolve_run_settings(flags: Mapping[str, Any] | None = None, config: Path | None = None,
                         command: str | None = None, default_model: str | None = None,
                         env: Mapping[str, str] | None = None) -> ResolvedSettings:
    """:func:`resolve_settings` for a run of ``command``, the model found as a user expects.

    The model is, in this order: the one a source names (``model`` flag, environment, config
    file), the one recorded in the folder given to ``resume`` (``command``'s ``run.json``,
    whose defining settings the resumed run must keep), the one the ``weights`` file (or
    ``distill``'s ``student``) names in its metadata, else ``default_model``.

    Raises:
        UsageError: as :func:`resolve_settings`; a ``resume`` folder ``command`` did not write.
    """
    from dreamprune_cli.models.checkpoint import read_model_name
    from dreamprune_cli.run_record import check_run_folder, read_run_record

    first = resolve_settings(flags, config=config, env=env)  # the sources, before defaults
    common = first.settings.common
    record = None
    if command is not None and common.resume is not None:
        record = read_run_record(common.resume, command)
        if record is None:
            check_run_folder(Path(common.resume), command)
            log.warning("--resume %s: no run.json (a folder from an older version); its "
                        "settings cannot be checked", common.resume)
    source = "default"
    if common.model is None and record is None:
        for label, path in (("--weights", common.weights),
                            ("--student", first.settings.distill.student)):
            named = read_model_name(path) if path is not None else None
            if named is not None:
                default_model, source = named, f"{label} {path}"
                break
    return resolve_settings(flags, config=config, env=env, default_model=default_model,
                            default_model_source=source, run_record=record)


def _check_unchanged(resolved: ResolvedSettings, run_record: RunRecord) -> None:
    """A resumed run keeps the settings that define it (see ``run_record.DEFINING``)."""
    values = {}
    for section in SECTIONS:
        values.update(dict(getattr(resolved.settings, section)))
    for name in run_record.locked:
        before, now = run_record.settings[name], values[name]
        if not same_value(before, now):
            folder = run_record.path.parent
            raise UsageError(
                f"$resume {folder}: {name} was {before!r} in this run, now {now!r} (from "
                f"{resolved.sources[name]}); a resumed run keeps the settings that define it "
                f"(drop the change, or start a new run with $out)")


def resolve_prune_spec(resolved: ResolvedSettings) -> PruneSpec:
    """The pruning a run does (:class:`~dreamprune_cli.prune.spec.PruneSpec`), decided once.

    Every decision that depends on where a setting came from is made here, before any work,
    so that the planners only see values:

    * ``channel_multiple``: the setting at ``channel`` and ``depth+channel``, else 1; a
      multiple above 1 given explicitly (config file, ``DREAMPRUNE_CHANNEL_MULTIPLE``, flag)
      at another granularity contradicts it (refused), one from a preset or the record of a
      resumed run is ignored;
    * ``allocator``: the setting (unstructured); ``drift`` at ``depth`` (blocks are chosen by
      measured drift; an explicit allocator is refused); at ``channel`` and ``depth+channel``
      the setting if it has a channel form, else, when it was not asked for (default, preset,
      a resumed run's record: a recorded value of a channel run was a default, since an
      explicit one was refused when the run started), ``lamp``
      (:data:`~dreamprune_cli.prune.spec.DEFAULT_CHANNEL_ALLOCATOR`), and refused when it was;
    * ``latency_target``: refused with unstructured pruning (masks keep the teacher's speed)
      or together with an explicit ``flops_target``;
    * the calibration images: ``calibration`` is read at the depth granularities (images of
      ``depth_calibration_size``), by the adaptive allocator (``calibration_size``) and by the
      reconstruction (``reconstruct_size``); a folder the user gave that none reads is
      flagged ``calibration_ignored``.

    Raises:
        UsageError: the contradictions above, in that order.
    """
    pr, seed = resolved.settings.prune, resolved.settings.common.seed
    granularity = pr.granularity
    channels = granularity in ("channel", "depth+channel")
    depth = granularity in ("depth", "depth+channel")

    channel_multiple = pr.channel_multiple if channels else 1
    if not channels and pr.channel_multiple > 1 and resolved.user_set("channel_multiple"):
        raise UsageError(f"$channel_multiple {pr.channel_multiple} (from "
                         f"{resolved.sources.get('channel_multiple', 'default')}) applies "
                         f"only at $granularity channel or depth+channel (now "
                         f"{granularity!r}, from "
                         f"{resolved.sources.get('granularity', 'default')}): drop it, or "
                         "add $granularity channel")

    allocator = pr.allocator
    source = resolved.sources.get("allocator", "default")
    if granularity == "depth":
        if resolved.user_set("allocator"):
            raise UsageError(f"$allocator {pr.allocator!r} (from {source}) at $granularity "
                             "depth: depth pruning chooses blocks by measured drift; drop "
                             "$allocator, or use $granularity depth+channel")
        allocator = "drift"
    elif channels and allocator not in CHANNEL_ALLOCATORS:
        if resolved.user_set("allocator"):
            raise UsageError(f"$allocator {allocator!r} (from {source}) at $granularity "
                             f"channel: expected one of {', '.join(CHANNEL_ALLOCATORS)}")
        log.info("--granularity channel: the %s allocator has no channel form; using %s",
                 allocator, DEFAULT_CHANNEL_ALLOCATOR)
        allocator = DEFAULT_CHANNEL_ALLOCATOR

    if pr.latency_target is not None:
        latency_source = resolved.sources.get("latency_target", "default")
        if granularity == "unstructured":
            raise UsageError(f"$latency_target {pr.latency_target} (from {latency_source}) "
                             "needs a structured $granularity (channel, depth, depth+channel): "
                             "weight masks do not make the network faster")
        if resolved.user_set("flops_target"):
            raise UsageError(f"$latency_target (from {latency_source}) and $flops_target (from "
                             f"{resolved.sources['flops_target']}): give one of them")

    reads_calibration = depth or pr.allocator == "adaptive"
    return PruneSpec(
        granularity=granularity, allocator=allocator, flops_target=pr.flops_target,
        latency_target=pr.latency_target, flops_size=pr.flops_size,
        channel_multiple=channel_multiple, exclude=tuple(pr.exclude),
        default_exclude=pr.default_exclude, min_keep=pr.min_keep,
        calibration_dir=pr.calibration if reads_calibration else None,
        calibration_count=pr.calibration_count,
        calibration_size=pr.depth_calibration_size if depth else pr.calibration_size,
        seed=seed,
        calibration_ignored=(pr.calibration is not None and not reads_calibration
                             and not pr.reconstruct and resolved.user_set("calibration")),
        reconstruct=pr.reconstruct, reconstruct_count=pr.reconstruct_count,
        reconstruct_size=pr.reconstruct_size,
        reconstruct_ridge=pr.reconstruct_ridge,
        reconstruct_dir=pr.calibration if pr.reconstruct else None)
