"""The ``dreamprune`` command line: parse, resolve settings, call the engine, print.

Nothing here computes anything; every subcommand is a call into the engine that a Python
user can make without Typer.
"""

from __future__ import annotations

import functools
import io
import logging
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup, TyperOption

from dreamprune_cli import __version__
from dreamprune_cli.console import Ui, make_table
from dreamprune_cli.errors import (EXIT_INTERRUPTED, EXIT_RUNTIME, EXIT_USAGE, DreampruneError,
                                   Interrupted, UsageError)
from dreamprune_cli.interrupts import signals_as_interrupts
from dreamprune_cli.settings import FIELD_SECTION, SECTIONS, ResolvedSettings, resolve_settings

log = logging.getLogger("dreamprune_cli")


def _document_defaults(command: Any) -> None:
    """Append each setting's built-in default to its option's help (``[default: 0.58]``),
    read from the settings model so that help and behaviour cannot disagree."""
    for param in command.params:
        if not isinstance(param, TyperOption) or param.name not in FIELD_SECTION:
            continue
        help_text = param.help or ""
        if "default" in help_text.lower():
            continue
        field = SECTIONS[FIELD_SECTION[param.name]].model_fields[param.name]
        value = field.get_default(call_default_factory=True)
        if value is None or isinstance(value, (bool, list, dict)):
            continue
        param.help = f"{help_text} [default: {value}]".strip()


class _DocumentedGroup(TyperGroup):
    """The app's command group: subcommands get their settings' defaults in their help."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _document_defaults(command)
        return command

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _document_defaults(self)
        super().format_options(ctx, formatter)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The command list with each summary's first sentence whole (wrapped, not cut)."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(name="dreamprune", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, rich_markup_mode=None, cls=_DocumentedGroup,
                  help="Compress image-restoration networks without their training data: "
                       "dream degraded inputs, prune, distill.",
                  epilog="Defaults shown are the built-in ones; a model's preset "
                         "(presets/<model>.toml), --config FILE.toml and DREAMPRUNE_<FIELD> "
                         "variables change them. 'dreamprune config show --model NAME' prints "
                         "every resolved value and its source.")
config_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, cls=_DocumentedGroup,
                         help="Inspect the resolved settings.")
app.add_typer(config_app, name="config")


@dataclass
class GlobalOptions:
    device: str | None = None
    seed: int | None = None
    threads: int | None = None
    json_output: bool = False
    quiet: bool = False
    verbose: bool = False
    config: Path | None = None


# Options shared by several subcommands (declared once).
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="Registered model name (see 'dreamprune models') or a custom "
                          "'package.module:factory' / 'file.py:Class'.")]
VariantOpt = Annotated[Optional[str], typer.Option(
    help="Model variant (official, tiny) when the weights carry no config.")]
WeightsOpt = Annotated[Optional[Path], typer.Option(
    "--weights", "-w", help="Checkpoint: the authors' .pth/.pt/.pk/.pkl/.ckpt or .safetensors.")]
RandomWeightsOpt = Annotated[Optional[bool], typer.Option(
    "--random-weights", help="Allow a model without weights (random initialisation; for "
                             "tests and smoke runs).")]
NonStrictOpt = Annotated[Optional[bool], typer.Option(
    "--non-strict/--strict",
    help="Load the weights that fit, skipping missing/unexpected keys (default: strict).")]
TrustOpt = Annotated[Optional[bool], typer.Option(
    "--trust-checkpoint/--no-trust-checkpoint",
    help="Allow full unpickling (may run code from the file; default: no).")]
OverwriteOpt = Annotated[Optional[bool], typer.Option(
    "--overwrite/--no-overwrite", help="Replace existing output files (default: no).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
DeviceOpt = Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N.")]
SeedOpt = Annotated[Optional[int], typer.Option(help="Random seed.")]
ThreadsOpt = Annotated[Optional[int], typer.Option(
    min=1, help="CPU threads for PyTorch. Default: OMP_NUM_THREADS if set, else the idle "
                "allotted CPUs but one, at least 1 (1 on a 2-core machine).")]
MinKeepOpt = Annotated[Optional[float], typer.Option(
    help="Adaptive allocator: least fraction of every layer kept unless the target needs "
         "less (default 0.1).")]
GranularityOpt = Annotated[Optional[str], typer.Option(
    help="unstructured (weight masks, the default) or channel (remove whole channels: a "
         "thinner, faster network; allocators uniform, global, lamp).")]
ConfigOpt = Annotated[Optional[Path], typer.Option(
    "--config", "-c", help="TOML settings file (see 'dreamprune config show').")]

SsimVariantOpt = Annotated[Optional[str], typer.Option(
    help="SSIM: basicsr (valid window, BasicSR, Wang's ssim.m) or matlab (MATLAB's built-in "
         "ssim on 0-255 doubles); default: the model's.")]
QuantizeOpt = Annotated[Optional[str], typer.Option(
    help="Outputs to 8 bits before scoring: round, or truncate (uint8(255 x), PReNet's "
         "test script); default: the model's.")]
PairingOpt = Annotated[Optional[str], typer.Option(
    help="How inputs pair with targets: stem (same names, default), rain100 (rain-N with "
         "norain-N) or sots (hazy S_L with clean S, centre-cropped to the hazy size).")]
TileOpt = Annotated[Optional[int], typer.Option(
    help="Restore in tiles of N x N px (bounded memory for large images); default: whole "
         "images.")]
TileOverlapOpt = Annotated[Optional[int], typer.Option(
    help="Context in px restored around each tile and cropped away (default 32).")]

F = TypeVar("F", bound=Callable[..., Any])


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dreamprune {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    threads: ThreadsOpt = None,
    json_output: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                          help="Debug logs; tracebacks on errors.")] = False,
    config: ConfigOpt = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Global options apply to every subcommand."""
    ctx.obj = GlobalOptions(device, seed, threads, json_output, quiet, verbose, config)


def _globals(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def _make_ui(ctx: typer.Context, json_flag: bool = False) -> Ui:
    opts = _globals(ctx)
    return _rank_ui(opts.json_output or json_flag, opts.quiet, opts.verbose)


def _rank_ui(json_output: bool, quiet: bool, verbose: bool) -> Ui:
    """The Ui asked for; under torchrun, ranks other than 0 print their errors only."""
    from dreamprune_cli.engine.distributed import launch_rank

    if launch_rank() == 0:
        return Ui(json_output=json_output, quiet=quiet, verbose=verbose)
    return Ui(quiet=True, verbose=verbose, stdout=Console(file=io.StringIO()))


def handle_errors(command: F) -> F:
    """Map expected errors to one stderr line and their exit code (with ``--json``, also
    the one JSON object on stdout); Ctrl-C to 130, SIGTERM to 143."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from dreamprune_cli.engine import distributed

        ctx = kwargs.get("ctx") or next(a for a in args if isinstance(a, typer.Context))
        opts = _globals(ctx)
        ui = _rank_ui(opts.json_output or bool(kwargs.get("json_flag")), opts.quiet,
                      opts.verbose)
        try:
            with signals_as_interrupts():
                distributed.refuse_launched(command.__name__.removesuffix("_command"))
                return command(*args, **kwargs)
        except DreampruneError as exc:
            if opts.verbose:
                ui.stderr.print(traceback.format_exc(), markup=False, highlight=False)
            ui.fail(str(exc) + _resume_hint(exc.checkpoint, exc.resume_dir), exc.exit_code,
                    checkpoint=exc.checkpoint, resume=exc.resume_dir)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            stop = exc if isinstance(exc, Interrupted) else Interrupted()
            what = "interrupted" if stop.signal_number == signal.SIGINT else \
                f"stopped by {signal.Signals(stop.signal_number).name}"
            ui.fail(what + _resume_hint(stop.checkpoint, stop.resume_dir), stop.exit_code,
                    checkpoint=stop.checkpoint, resume=stop.resume_dir)
            raise typer.Exit(stop.exit_code) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: say so in one line, trace with --verbose
            if opts.verbose:
                ui.stderr.print(traceback.format_exc(), markup=False, highlight=False)
            ui.fail(f"internal error: {type(exc).__name__}: {exc} (run with --verbose for "
                    "the traceback)", EXIT_RUNTIME)
            raise typer.Exit(EXIT_RUNTIME) from None
        finally:
            distributed.leave()  # the process group, if this command joined one

    return wrapper  # type: ignore[return-value]


def _load_model(common: Any) -> Any:
    """The model the common settings name, with its weights (none: an error unless
    ``--random-weights``)."""
    from dreamprune_cli.models.loading import load_model

    return load_model(common.model, common.variant, common.weights,
                      strict=not common.non_strict, trust=common.trust_checkpoint,
                      overrides=common.model_kwargs, require_weights=not common.random_weights)


def _run_record(command: str, resolved: ResolvedSettings, steps: int) -> dict[str, Any]:
    """The settings ``command`` records in its folder's ``run.json`` (``steps``: the
    effective number, the default included)."""
    from dreamprune_cli.run_record import record_settings

    values = {name: getattr(getattr(resolved.settings, section), name)
              for name, section in FIELD_SECTION.items()}
    return record_settings(command, {**values, "steps": steps})


def _resume_hint(checkpoint: Path | None, resume_dir: Path | None) -> str:
    if checkpoint is None:
        return ""
    return f"; progress saved in {checkpoint} (continue with --resume {resume_dir})"


def _resolve(ctx: typer.Context, flags: dict[str, Any], config: Path | None = None,
             default_model: str | None = None, command: str | None = None) -> ResolvedSettings:
    """Settings from every source; subcommand flags override the global ones.

    The model is, in this order: the one a source names (``--model``, environment, config
    file), the one recorded in the folder given to ``--resume`` (``command``'s ``run.json``,
    whose defining settings the resumed run must keep), the one the ``--weights`` file (or
    ``distill``'s ``--student``) names in its metadata, else ``default_model``.
    """
    from dreamprune_cli.models.checkpoint import read_model_name
    from dreamprune_cli.run_record import check_run_folder, read_run_record

    opts = _globals(ctx)
    merged = dict(flags)
    for name in ("device", "seed", "threads"):
        if merged.get(name) is None:
            merged[name] = getattr(opts, name)
    config = config or opts.config
    first = resolve_settings(merged, config=config)  # what the sources say, before defaults
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
    return resolve_settings(merged, config=config, default_model=default_model,
                            default_model_source=source, run_record=record)


# --------------------------------------------------------------------------- models
@app.command("models")
@handle_errors
def models_command(
    ctx: typer.Context,
    variant: Annotated[str, typer.Option(help="Variant to count.")] = "official",
    size: Annotated[int, typer.Option(help="Square input side for MACs.")] = 256,
    json_flag: JsonOpt = False,
) -> None:
    """List the registered models with parameters and MACs at 3 x SIZE x SIZE."""
    from dreamprune_cli.engine.catalog import describe_models

    ui = _make_ui(ctx, json_flag)
    rows = describe_models(variant=variant, size=size)
    table = make_table(f"models ({variant}, MACs at 3x{size}x{size})",
                       ["name", "task", "params", "GMACs", "channels", "output", "multiple",
                        "metric"],
                       [[r["name"], r["task"], r["params"], r["macs"] / 1e9, r["channel_order"],
                         r["output"], r["size_multiple"], r["metric_space"]] for r in rows])
    ui.emit({"variant": variant, "input_size": [3, size, size], "models": rows}, table)


# --------------------------------------------------------------------------- config
@config_app.command("show")
@handle_errors
def config_show(
    ctx: typer.Context,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Print the resolved settings and where each value came from."""
    ui = _make_ui(ctx, json_flag)
    resolved = _resolve(ctx, {"model": model}, config)
    values = resolved.flat()
    rows = [[f"{FIELD_SECTION[n]}.{n}", values[n], resolved.sources[n]] for n in FIELD_SECTION]
    ui.emit({"settings": {s: getattr(resolved.settings, s).model_dump(mode="json")
                          for s in SECTIONS},
             "sources": resolved.sources},
            make_table("settings", ["field", "value", "source"], rows))


# --------------------------------------------------------------------------- evaluate
@app.command("evaluate")
@handle_errors
def evaluate_command(
    ctx: typer.Context,
    model: ModelOpt = None,
    variant: VariantOpt = None,
    weights: WeightsOpt = None,
    input_dir: Annotated[Optional[Path], typer.Option(help="Degraded images.")] = None,
    target_dir: Annotated[Optional[Path], typer.Option(
        help="Clean targets (paired by --pairing).")] = None,
    metric_space: Annotated[Optional[str], typer.Option(
        help="y (BT.601 luma) or rgb; default: the model's.")] = None,
    crop_border: Annotated[Optional[int], typer.Option(help="Pixels cropped per side.")] = None,
    ssim_variant: SsimVariantOpt = None,
    quantize: QuantizeOpt = None,
    pairing: PairingOpt = None,
    tile: TileOpt = None,
    tile_overlap: TileOverlapOpt = None,
    save_dir: Annotated[Optional[Path], typer.Option(help="Write restored PNGs here.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N pairs.")] = None,
    non_strict: NonStrictOpt = None,
    random_weights: RandomWeightsOpt = None,
    trust_checkpoint: TrustOpt = None,
    overwrite: OverwriteOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    threads: ThreadsOpt = None,
    config: ConfigOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Score a model on degraded/clean pairs: PSNR and SSIM as the field reports them."""
    from dreamprune_cli.engine.device import resolve_device
    from dreamprune_cli.engine.distributed import join_from_environment
    from dreamprune_cli.engine.evaluate import evaluate_pairs
    from dreamprune_cli.engine.threads import apply_threads

    ui = _make_ui(ctx, json_flag)
    resolved = _resolve(ctx, dict(
        model=model, variant=variant, weights=weights, input_dir=input_dir,
        target_dir=target_dir, metric_space=metric_space, crop_border=crop_border,
        ssim_variant=ssim_variant, quantize=quantize, pairing=pairing, tile=tile,
        tile_overlap=tile_overlap, save_dir=save_dir, limit=limit, non_strict=non_strict,
        random_weights=random_weights,
        trust_checkpoint=trust_checkpoint, overwrite=overwrite, device=device, seed=seed,
        threads=threads),
        config)
    s = resolved.settings
    common, ev = s.common, s.evaluate
    device_ = resolve_device(common.device)
    sync = join_from_environment(device_)
    device_ = sync.device if sync is not None else device_
    apply_threads(common.threads)
    loaded = _load_model(common)
    pairs = _eval_pairs(loaded.info.task, ev.input_dir, ev.target_dir, prefix="--",
                        limit=ev.limit, pairing=ev.pairing)
    input_root, target_root = pairs[0].input_path.parent, pairs[0].target_path.parent
    scoring = _scoring(resolved, loaded.info)
    _check_pairs(loaded, pairs, scoring)
    result = evaluate_pairs(loaded.adapter(), pairs, device=device_, save_dir=common.save_dir,
                            overwrite=common.overwrite, progress=ui.progress(), **scoring,
                            sync=sync)
    data = {"model": loaded.name, "weights": loaded.weights, "device": str(device_),
            **result.as_dict(), "pairing": ev.pairing, "input_dir": input_root,
            "target_dir": target_root}
    space = result.metric_space
    table = make_table(
        f"evaluate {loaded.name} ({space.upper() if space == 'y' else 'RGB'}, crop "
        f"{result.crop_border}, SSIM {result.ssim_variant}, {result.quantization}"
        + (f", tiles {result.tile}+{result.tile_overlap}" if result.tile else "") + ")",
        ["count", "PSNR", "SSIM", "GMACs/img", "GMACs@256", "params", "seconds"],
        [[result.count, result.psnr, result.ssim, result.macs / 1e9, result.macs_256 / 1e9,
          result.params, result.seconds]])
    ui.emit(data, table)


# --------------------------------------------------------------------------- export
@app.command("export")
@handle_errors
def export_command(
    ctx: typer.Context,
    weights: Annotated[Path, typer.Option("--weights", "-w", help="Checkpoint to convert.")],
    out: Annotated[Path, typer.Option(help="Destination .safetensors file.")],
    model: ModelOpt = None,
    variant: VariantOpt = None,
    non_strict: NonStrictOpt = None,
    trust_checkpoint: TrustOpt = None,
    overwrite: OverwriteOpt = None,
    config: ConfigOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Convert any accepted checkpoint to safetensors carrying the model name and config."""
    from dreamprune_cli.models.loading import save_model

    ui = _make_ui(ctx, json_flag)
    if out.suffix != ".safetensors":
        raise UsageError(f"--out {out}: expected a .safetensors file name")
    resolved = _resolve(ctx, dict(model=model, variant=variant, weights=weights,
                                  non_strict=non_strict, trust_checkpoint=trust_checkpoint,
                                  overwrite=overwrite), config)
    common = resolved.settings.common
    loaded = _load_model(common)
    path = save_model(loaded, out, overwrite=common.overwrite)
    tensors = len(loaded.network.state_dict())
    ui.emit({"model": loaded.name, "config": loaded.config, "weights": weights,
             "output": path, "tensors": tensors},
            make_table("export", ["model", "tensors", "output"], [[loaded.name, tensors, path]]))


# --------------------------------------------------------------------------- prune
@app.command("prune")
@handle_errors
def prune_command(
    ctx: typer.Context,
    model: ModelOpt = None,
    variant: VariantOpt = None,
    weights: WeightsOpt = None,
    flops_target: Annotated[Optional[float], typer.Option(
        help="Fraction of the dense MACs to keep, in (0, 1]; 0.58 keeps 58%.")] = None,
    allocator: Annotated[Optional[str], typer.Option(
        help="Layer-wise sparsity: uniform, global, erk, lamp or adaptive.")] = None,
    granularity: GranularityOpt = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Output folder: student.safetensors, masks.safetensors, report.json. "
             "[required]")] = None,
    flops_size: Annotated[Optional[int], typer.Option(
        help="Square input side S at which MACs are counted (3 x S x S).")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(
        metavar="GLOB",
        help="Module-name glob kept dense (repeatable); adds to the model's defaults.")] = None,
    default_exclude: Annotated[Optional[bool], typer.Option(
        "--default-exclude/--no-default-exclude",
        help="Keep the model's first/last convolutions dense (default: yes).")] = None,
    calibration: Annotated[Optional[Path], typer.Option(
        help="Degraded images for the adaptive allocator (default: synthetic ones).")] = None,
    calibration_count: Annotated[Optional[int], typer.Option(
        help="Calibration patches for the adaptive allocator.")] = None,
    min_keep: MinKeepOpt = None,
    calibration_size: Annotated[Optional[int], typer.Option(
        help="Side of the calibration patches.")] = None,
    non_strict: NonStrictOpt = None,
    random_weights: RandomWeightsOpt = None,
    trust_checkpoint: TrustOpt = None,
    overwrite: OverwriteOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    threads: ThreadsOpt = None,
    config: ConfigOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Prune a model to keep exactly a fraction of its MACs (magnitude masks per layer)."""
    from dreamprune_cli.engine.channel_prune import channel_allocator, prune_channels
    from dreamprune_cli.engine.device import resolve_device
    from dreamprune_cli.engine.prune import prune_model, write_prune_outputs
    from dreamprune_cli.engine.threads import apply_threads
    from dreamprune_cli.fileio import ensure_output_dir
    from dreamprune_cli.prune.calibration import calibration_from_dir

    ui = _make_ui(ctx, json_flag)
    resolved = _resolve(ctx, dict(
        model=model, variant=variant, weights=weights, flops_target=flops_target,
        allocator=allocator, granularity=granularity, out=out, flops_size=flops_size,
        exclude=exclude or None,
        default_exclude=default_exclude, calibration=calibration,
        calibration_count=calibration_count, calibration_size=calibration_size,
        min_keep=min_keep, non_strict=non_strict, random_weights=random_weights,
        trust_checkpoint=trust_checkpoint,
        overwrite=overwrite, device=device, seed=seed,
        threads=threads), config)
    s = resolved.settings
    common, pr = s.common, s.prune
    if common.out is None:
        raise UsageError("--out is required: the folder for student.safetensors, "
                         "masks.safetensors and report.json")
    if common.out.exists():  # refuse a non-empty folder before any work
        ensure_output_dir(common.out, common.overwrite)
    images = None
    if pr.calibration is not None:
        if pr.allocator == "adaptive":
            images = calibration_from_dir(pr.calibration, pr.calibration_count,
                                          pr.calibration_size, common.seed)
        else:
            log.warning("--calibration is only used by the adaptive allocator; ignored")
    device_ = resolve_device(common.device)
    apply_threads(common.threads)
    loaded = _load_model(common)
    if pr.granularity == "channel":
        result = prune_channels(loaded, pr.flops_target,
                                channel_allocator(pr.allocator, resolved.sources["allocator"]),
                                flops_size=pr.flops_size, exclude=pr.exclude,
                                min_keep=pr.min_keep)
    else:
        result = prune_model(loaded, pr.flops_target, pr.allocator, flops_size=pr.flops_size,
                             exclude=pr.exclude, calibration=images,
                             use_default_exclude=pr.default_exclude, device=device_,
                             calibration_count=pr.calibration_count,
                             calibration_size=pr.calibration_size, seed=common.seed,
                             min_keep=pr.min_keep,
                             progress=ui.progress())
    paths = write_prune_outputs(result, common.out, overwrite=common.overwrite)
    if not ui.quiet:
        ui.print_table(make_table(
            f"layers of {loaded.name} ({result.allocator}, {result.granularity}, "
            f"MACs at 3x{pr.flops_size}x{pr.flops_size})",
            ["layer", "kind", "shape", "pruned", "weights", "kept", "keep", "MACs", "MACs kept"],
            [[layer.name, layer.kind, "x".join(map(str, layer.shape)),
              "yes" if layer.pruned else "no (excluded)", layer.params, layer.params_kept,
              layer.keep_ratio, layer.macs_dense, layer.macs_kept] for layer in result.layers]),
            stderr=True)
    data = {**result.as_dict(layers=False), "output": common.out,
            "files": {key: path for key, path in paths.items()}}
    ui.emit(data, make_table(
        f"prune {loaded.name} -> {common.out}",
        ["allocator", "target", "MACs ratio", "GMACs before", "GMACs after", "params before",
         "params after", "seconds"],
        [[result.allocator, result.flops_target, result.macs_ratio, result.macs_before / 1e9,
          result.macs_after / 1e9, result.params_before, result.params_after,
          result.seconds]]))


# --------------------------------------------------------------------------- dream / distill / pipeline
DREAM_DEFAULT_STEPS = 200
JOINT_DEFAULT_STEPS = 400

CountOpt = Annotated[Optional[int], typer.Option(help="Dreamed images to produce.")]
SizeOpt = Annotated[Optional[int], typer.Option(help="Side of the dreamed images (px).")]
StepsOpt = Annotated[Optional[int], typer.Option(
    help=f"Steps (dream: per batch, default {DREAM_DEFAULT_STEPS}; distill/pipeline: joint "
         f"steps, default {JOINT_DEFAULT_STEPS}).")]
BatchOpt = Annotated[Optional[int], typer.Option(help="Images optimised together.")]
CleanDirOpt = Annotated[Optional[Path], typer.Option(
    help="Clean images to dream towards (default: procedural scenes).")]
LambdaOrthOpt = Annotated[Optional[float], typer.Option(help="Weight of the diversity loss.")]
LambdaTvOpt = Annotated[Optional[float], typer.Option(
    help="Weight of a total-variation prior on the dreams (0: off).")]
LambdaFarOpt = Annotated[Optional[float], typer.Option(
    help="Weight of the reward for dreams far from their clean target at coarse scale (0: off).")]
NoiseLrOpt = Annotated[Optional[float], typer.Option(help="Adam learning rate of the dreams.")]
StudentLrOpt = Annotated[Optional[float], typer.Option(help="Adam learning rate of the student.")]
LambdaKdOpt = Annotated[Optional[float], typer.Option(help="Weight of the distillation loss.")]
RoundOpt = Annotated[Optional[int], typer.Option(help="Steps before new noise and targets.")]
ReprOpt = Annotated[Optional[str], typer.Option(help="L_orth representation: gram or gap.")]
ResumeOpt = Annotated[Optional[Path], typer.Option(help="Continue the run in this folder.")]
AmpOpt = Annotated[Optional[str], typer.Option(help="CUDA mixed precision: auto, off, bf16, fp16.")]
ChannelsLastOpt = Annotated[Optional[str], typer.Option(
    "--channels-last", help="CUDA memory format: auto, on, off.")]
CheckpointEveryOpt = Annotated[Optional[int], typer.Option(help="Steps between checkpoints.")]


def _teacher_and_runtime(resolved: ResolvedSettings, dreaming: bool = True
                         ) -> tuple[Any, Any, Any, Any, Any, Any]:
    """The teacher, device, precision, clean source, dream schedule and process group
    (``None`` unless under torchrun) of a training run, checked before any work: the dream
    size against the model, the diversity loss's layer (when ``dreaming`` with
    ``lambda_orth > 0``), the clean images, the batch's split over the processes."""
    import torch

    from dreamprune_cli.data.clean import make_clean_source
    from dreamprune_cli.engine.checks import check_diversity_layer, check_input_size
    from dreamprune_cli.engine.device import resolve_device, resolve_precision
    from dreamprune_cli.engine.distributed import join_from_environment, split_batch
    from dreamprune_cli.engine.dream import DreamSchedule
    from dreamprune_cli.engine.threads import apply_threads

    s = resolved.settings
    common, dream = s.common, s.dream
    device = resolve_device(common.device)
    sync = join_from_environment(device)
    device = sync.device if sync is not None else device
    apply_threads(common.threads)
    precision = resolve_precision(device, common.amp, common.channels_last)
    teacher = _load_model(common)
    if dream.size % teacher.info.size_multiple:
        log.info("--size %d is padded to a multiple of %d inside the model", dream.size,
                 teacher.info.size_multiple)
    if dreaming:
        check_input_size(teacher, dream.size, dream.size, f"--size {dream.size}")
        check_diversity_layer(teacher, dream.lambda_orth > 0)
    schedule = DreamSchedule.from_values(dream.model_dump())
    split_batch(schedule.batch_size, sync)
    torch.manual_seed(common.seed)
    return teacher, device, precision, make_clean_source(dream.clean_dir), schedule, sync


def _scoring(resolved: ResolvedSettings, info: Any) -> dict[str, Any]:
    """``evaluate_pairs``'s protocol keywords: the settings, else the model's registry entry."""
    from dreamprune_cli.engine.evaluate import scoring_protocol
    from dreamprune_cli.engine.tiling import Tiling

    ev = resolved.settings.evaluate
    if ev.tile is None and resolved.sources.get("tile_overlap", "default") != "default":
        log.warning("--tile-overlap is only used with --tile; ignored")
    return {**scoring_protocol(info, ev.metric_space, ev.crop_border, ev.ssim_variant,
                               ev.quantize),
            "tiling": None if ev.tile is None else Tiling.aligned(ev.tile, ev.tile_overlap,
                                                                  info.size_multiple)}


def _check_pairs(loaded: Any, pairs: list[Any], scoring: dict[str, Any]) -> None:
    """Every evaluation image readable, large enough for the scoring (the valid-window SSIM
    needs 11 px after the crop border; MATLAB's padded SSIM any size) and of a size the model
    takes, before any work."""
    from dreamprune_cli.engine.checks import check_eval_pairs
    from dreamprune_cli.metrics import SSIM_WINDOW

    min_side = SSIM_WINDOW if scoring["ssim_variant"] == "basicsr" else 1
    check_eval_pairs(loaded, pairs, scoring["crop_border"], min_side=min_side)


def _eval_pairs(task: str, input_dir: Path | None, target_dir: Path | None,
                prefix: str | None = "--eval-", limit: int | None = None,
                pairing: str = "stem") -> list[Any]:
    """Evaluation pairs from folders (paired by ``pairing``), or the task's default synthetic
    set; ``prefix`` names the command's folder options in messages (``None``: it has none)."""
    from dreamprune_cli.data.pairs import pair_folders
    from dreamprune_cli.data.synthetic import synthetic_test_set

    if (input_dir is None) != (target_dir is None):
        raise UsageError(f"{prefix}input-dir and {prefix}target-dir go together (or give "
                         "neither to use the synthetic set of the model's task)")
    if input_dir is None:
        input_dir, target_dir = synthetic_test_set(task)
        name = "derain" if task == "identity" else task
        if prefix is None:  # the command has no evaluation-folder options
            log.info("scoring on the synthetic %s set (%s)", name, input_dir.parent)
        else:
            log.info("no %sinput-dir/%starget-dir: using the synthetic %s set (%s)", prefix,
                     prefix, name, input_dir.parent)
    return pair_folders(input_dir, target_dir, limit=limit,  # type: ignore[arg-type]
                        pairing=pairing)  # type: ignore[arg-type]


@app.command("dream")
@handle_errors
def dream_command(
    ctx: typer.Context,
    save_dir: Annotated[Optional[Path], typer.Option(
        help="Folder for the dreams. [required, unless --resume]")] = None,
    model: ModelOpt = None,
    variant: VariantOpt = None,
    weights: WeightsOpt = None,
    count: CountOpt = None,
    size: SizeOpt = None,
    steps: StepsOpt = None,
    batch_size: BatchOpt = None,
    clean_dir: CleanDirOpt = None,
    lambda_orth: LambdaOrthOpt = None,
    lambda_tv: LambdaTvOpt = None,
    lambda_far: LambdaFarOpt = None,
    noise_lr: NoiseLrOpt = None,
    representation: ReprOpt = None,
    resume: ResumeOpt = None,
    overwrite: OverwriteOpt = None,
    non_strict: NonStrictOpt = None,
    random_weights: RandomWeightsOpt = None,
    trust_checkpoint: TrustOpt = None,
    amp: AmpOpt = None,
    channels_last: ChannelsLastOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    threads: ThreadsOpt = None,
    config: ConfigOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Invert the teacher: optimise noise into degraded images it restores to clean ones."""
    import torch

    from dreamprune_cli.engine.distributed import rank_seed
    from dreamprune_cli.engine.dream_files import run_dream_to_folder

    ui = _make_ui(ctx, json_flag)
    resolved = _resolve(ctx, dict(
        save_dir=save_dir, model=model, variant=variant, weights=weights, count=count,
        size=size, steps=steps, batch_size=batch_size, clean_dir=clean_dir,
        lambda_orth=lambda_orth, lambda_tv=lambda_tv, lambda_far=lambda_far,
        noise_lr=noise_lr, representation=representation,
        resume=resume, overwrite=overwrite, non_strict=non_strict, random_weights=random_weights,
        trust_checkpoint=trust_checkpoint, amp=amp, channels_last=channels_last,
        device=device, seed=seed,
        threads=threads), config, default_model="ffa", command="dream")
    s = resolved.settings
    folder = s.common.resume or s.common.save_dir
    if folder is None:
        raise UsageError("--save-dir is required (the folder for the dreams)")
    teacher, device_, precision, clean_source, schedule, sync = _teacher_and_runtime(resolved)
    steps_ = s.dream.steps or DREAM_DEFAULT_STEPS
    generator = torch.Generator().manual_seed(rank_seed(s.common.seed, sync))
    manifest = run_dream_to_folder(
        teacher.adapter().to(device_), clean_source, folder, s.dream.count, steps_, schedule,
        generator, device_, precision,
        manifest={"model": teacher.name, "weights": teacher.weights, "seed": s.common.seed,
                  "steps_per_batch": steps_, "settings": resolved.flat(),
                  "device": str(device_)},
        resume=s.common.resume is not None, overwrite=s.common.overwrite,
        run_record=_run_record("dream", resolved, steps_), progress=ui.progress(), sync=sync)
    table = make_table(f"dream {teacher.name}", ["count", "L_dream", "L_orth", "diversity (cos)",
                                                 "PSNR dream vs clean", "folder"],
                       [[manifest["count"], manifest["final_dream_loss"],
                         manifest["final_orth_loss"], manifest["diversity_mean_cosine"],
                         manifest["psnr_dream_vs_clean"], folder]])
    ui.emit({**manifest, "save_dir": folder}, table)


@app.command("distill")
@handle_errors
def distill_command(
    ctx: typer.Context,
    student: Annotated[Optional[Path], typer.Option(
        help="Pruned student: DIR/student.safetensors written by 'prune'. [required]")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Output folder. [required, unless --resume]")] = None,
    dreams: Annotated[Optional[Path], typer.Option(
        help="A folder written by 'dream' (offline); default: dream online.")] = None,
    model: ModelOpt = None,
    variant: VariantOpt = None,
    weights: WeightsOpt = None,
    steps: StepsOpt = None,
    batch_size: BatchOpt = None,
    size: SizeOpt = None,
    round_steps: RoundOpt = None,
    clean_dir: CleanDirOpt = None,
    student_lr: StudentLrOpt = None,
    lambda_kd: LambdaKdOpt = None,
    lambda_orth: LambdaOrthOpt = None,
    lambda_tv: LambdaTvOpt = None,
    lambda_far: LambdaFarOpt = None,
    noise_lr: NoiseLrOpt = None,
    checkpoint_every: CheckpointEveryOpt = None,
    resume: ResumeOpt = None,
    overwrite: OverwriteOpt = None,
    non_strict: NonStrictOpt = None,
    random_weights: RandomWeightsOpt = None,
    trust_checkpoint: TrustOpt = None,
    amp: AmpOpt = None,
    channels_last: ChannelsLastOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    threads: ThreadsOpt = None,
    config: ConfigOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Train a pruned student to match the teacher on dreamed inputs.

    Required: --model (the teacher), --student and --out (or --resume). The student is
    scored on the synthetic test set of the teacher's task; score it on your own pairs
    with 'dreamprune evaluate --weights OUT/student.safetensors'.
    """
    from dreamprune_cli.engine.distill import load_student
    from dreamprune_cli.engine.distill_run import run_distill
    from dreamprune_cli.engine.dream_files import read_dreams

    ui = _make_ui(ctx, json_flag)
    resolved = _resolve(ctx, dict(
        student=student, out=out, dreams=dreams, model=model, variant=variant,
        weights=weights, steps=steps, batch_size=batch_size, size=size,
        round_steps=round_steps, clean_dir=clean_dir, student_lr=student_lr,
        lambda_kd=lambda_kd, lambda_orth=lambda_orth, lambda_tv=lambda_tv,
        lambda_far=lambda_far, noise_lr=noise_lr,
        checkpoint_every=checkpoint_every, resume=resume, overwrite=overwrite,
        non_strict=non_strict, random_weights=random_weights,
        trust_checkpoint=trust_checkpoint, amp=amp,
        channels_last=channels_last, device=device, seed=seed,
        threads=threads), config, command="distill")
    s = resolved.settings
    out_dir = s.common.resume or s.common.out
    if out_dir is None:
        raise UsageError("--out is required (the folder for the distilled student)")
    if s.distill.student is None:
        raise UsageError("--student is required (student.safetensors written by 'prune')")
    if s.common.model is None:
        raise UsageError("--model is required (the teacher; neither the --weights nor the "
                         "--student file names its model)")
    steps_ = s.dream.steps or JOINT_DEFAULT_STEPS
    teacher, device_, precision, clean_source, schedule, sync = _teacher_and_runtime(
        resolved, dreaming=s.distill.dreams is None)
    pruned = load_student(s.distill.student, teacher.name, trust=s.common.trust_checkpoint)
    dream_tensors = read_dreams(s.distill.dreams)["dreams"] if s.distill.dreams else None
    scoring = _scoring(resolved, teacher.info)
    pairs = _eval_pairs(teacher.info.task, None, None, prefix=None)
    _check_pairs(teacher, pairs, scoring)
    outcome = run_distill(
        teacher, pruned, out_dir, dreams=dream_tensors,
        steps=steps_, schedule=schedule,
        round_steps=s.dream.round_steps, student_lr=s.distill.student_lr,
        lambda_kd=s.distill.lambda_kd, clean_source=clean_source,
        eval_pairs=pairs, **scoring, device=device_, precision=precision, seed=s.common.seed,
        checkpoint_every=s.distill.checkpoint_every, resume=s.common.resume is not None,
        overwrite=s.common.overwrite, run_record=_run_record("distill", resolved, steps_),
        progress=ui.progress(), sync=sync)
    m = outcome.metrics
    table = make_table(f"distill {teacher.name} ({m['mode']})",
                       ["steps", "final L_KD", "PSNR teacher", "PSNR student", "MACs kept",
                        "student"],
                       [[m["steps"], m["final_kd_loss"], m["psnr_teacher"], m["psnr_student"],
                         m["macs_ratio"], outcome.student_path]],
                       caption=outcome.gap.describe("student - teacher"))
    ui.emit(m, table)


@app.command("pipeline")
@handle_errors
def pipeline_command(
    ctx: typer.Context,
    model: ModelOpt = None,
    variant: VariantOpt = None,
    weights: WeightsOpt = None,
    flops_target: Annotated[Optional[float], typer.Option(
        help="Fraction of the MACs to keep, e.g. 0.58.")] = None,
    allocator: Annotated[Optional[str], typer.Option(
        help="uniform, global, erk, lamp or adaptive (default).")] = None,
    granularity: GranularityOpt = None,
    flops_size: Annotated[Optional[int], typer.Option(help="Square size for MACs.")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(
        help="Module-name globs kept dense (repeatable).")] = None,
    steps: StepsOpt = None,
    batch_size: BatchOpt = None,
    size: SizeOpt = None,
    round_steps: RoundOpt = None,
    min_keep: MinKeepOpt = None,
    calibration_source: Annotated[Optional[str], typer.Option(
        help="Adaptive calibration: dreams (default) or synthetic degraded images.")] = None,
    calibration_steps: Annotated[Optional[int], typer.Option(
        help="Dreaming steps for the adaptive allocator's calibration.")] = None,
    clean_dir: CleanDirOpt = None,
    student_lr: StudentLrOpt = None,
    lambda_kd: LambdaKdOpt = None,
    lambda_orth: LambdaOrthOpt = None,
    lambda_tv: LambdaTvOpt = None,
    lambda_far: LambdaFarOpt = None,
    noise_lr: NoiseLrOpt = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Output folder (default runs/<model>-<timestamp>).")] = None,
    eval_input_dir: Annotated[Optional[Path], typer.Option(help="Evaluation inputs.")] = None,
    eval_target_dir: Annotated[Optional[Path], typer.Option(help="Evaluation targets.")] = None,
    ssim_variant: SsimVariantOpt = None,
    quantize: QuantizeOpt = None,
    pairing: PairingOpt = None,
    tile: TileOpt = None,
    tile_overlap: TileOverlapOpt = None,
    checkpoint_every: CheckpointEveryOpt = None,
    resume: ResumeOpt = None,
    overwrite: OverwriteOpt = None,
    non_strict: NonStrictOpt = None,
    random_weights: RandomWeightsOpt = None,
    trust_checkpoint: TrustOpt = None,
    amp: AmpOpt = None,
    channels_last: ChannelsLastOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    threads: ThreadsOpt = None,
    config: ConfigOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Prune to a FLOPs target, dream + distill, evaluate, report: the whole method."""
    import time as _time

    from dreamprune_cli.engine.checks import check_flops_size
    from dreamprune_cli.engine.channel_prune import channel_allocator
    from dreamprune_cli.engine.pipeline import run_pipeline

    ui = _make_ui(ctx, json_flag)
    resolved = _resolve(ctx, dict(
        model=model, variant=variant, weights=weights, flops_target=flops_target,
        allocator=allocator, granularity=granularity, flops_size=flops_size,
        exclude=exclude or None, steps=steps,
        batch_size=batch_size, size=size, round_steps=round_steps,
        calibration_steps=calibration_steps, calibration_source=calibration_source,
        min_keep=min_keep, clean_dir=clean_dir, student_lr=student_lr,
        lambda_kd=lambda_kd, lambda_orth=lambda_orth, lambda_tv=lambda_tv,
        lambda_far=lambda_far, noise_lr=noise_lr, out=out,
        eval_input_dir=eval_input_dir, eval_target_dir=eval_target_dir,
        ssim_variant=ssim_variant, quantize=quantize, pairing=pairing, tile=tile,
        tile_overlap=tile_overlap, checkpoint_every=checkpoint_every, resume=resume,
        overwrite=overwrite, non_strict=non_strict, random_weights=random_weights,
        trust_checkpoint=trust_checkpoint, amp=amp,
        channels_last=channels_last, device=device, seed=seed,
        threads=threads), config, default_model="ffa", command="pipeline")
    s = resolved.settings
    steps_ = s.dream.steps or JOINT_DEFAULT_STEPS
    allocator_ = s.prune.allocator if s.prune.granularity == "unstructured" \
        else channel_allocator(s.prune.allocator, resolved.sources["allocator"])
    teacher, device_, precision, clean_source, schedule, sync = _teacher_and_runtime(resolved)
    pairs = _eval_pairs(teacher.info.task, s.pipeline.eval_input_dir,
                        s.pipeline.eval_target_dir, pairing=s.evaluate.pairing)
    out_dir = s.common.resume or s.common.out or Path("runs") / (
        f"{teacher.name}-{_time.strftime('%Y%m%d-%H%M%S')}")
    scoring = _scoring(resolved, teacher.info)
    space = scoring["metric_space"]
    _check_pairs(teacher, pairs, scoring)
    check_flops_size(teacher, s.prune.flops_size)
    result = run_pipeline(
        teacher, flops_target=s.prune.flops_target, allocator=allocator_,
        granularity=s.prune.granularity,
        flops_size=s.prune.flops_size, exclude=list(s.prune.exclude),
        min_keep=s.prune.min_keep, clean_source=clean_source, schedule=schedule,
        steps=steps_, round_steps=s.dream.round_steps,
        student_lr=s.distill.student_lr, lambda_kd=s.distill.lambda_kd,
        calibration_steps=s.pipeline.calibration_steps,
        calibration_source=s.pipeline.calibration_source, eval_pairs=pairs, **scoring,
        out_dir=out_dir, device=device_, precision=precision,
        seed=s.common.seed, checkpoint_every=s.distill.checkpoint_every,
        resume=s.common.resume is not None, overwrite=s.common.overwrite,
        settings=resolved.flat(), run_record=_run_record("pipeline", resolved, steps_),
        progress=ui.progress(), sync=sync)
    table = make_table(
        f"pipeline {teacher.name}: {result.macs_ratio:.3f} of the MACs, "
        f"{allocator_}{', channel' if s.prune.granularity == 'channel' else ''}, "
        f"{result.joint.steps} steps, {result.seconds:.0f} s",
        ["model", f"PSNR ({space})", "SSIM", "GMACs@256", "params"],
        [["teacher", result.teacher.psnr, result.teacher.ssim, result.teacher.macs_256 / 1e9,
          result.teacher.params_nonzero],
         ["pruned (no distillation)", result.pruned.psnr, result.pruned.ssim,
          result.pruned.macs_256 / 1e9, result.pruned.params_nonzero],
         ["dream + distill", result.student.psnr, result.student.ssim,
          result.student.macs_256 / 1e9, result.student.params_nonzero]],
        caption=result.student_gap.describe("student - teacher"))
    ui.emit(result.summary(), table)


# --------------------------------------------------------------------------- synth
@app.command("synth")
@handle_errors
def synth_command(
    ctx: typer.Context,
    task: Annotated[Optional[str], typer.Option(
        help="Degradation: derain (rain streaks), raindrop (drops on glass) or dehaze. "
             "[required]")] = None,
    count: Annotated[Optional[int], typer.Option(help="Number of pairs (default 16).")] = None,
    size: Annotated[Optional[int], typer.Option(
        help="Side of the square images in pixels (default 64).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Output folder: input/, target/ and manifest.json. [required]")] = None,
    clean_dir: Annotated[Optional[Path], typer.Option(
        help="Crop clean images from this folder instead of procedural scenes.")] = None,
    seed: SeedOpt = None,
    overwrite: OverwriteOpt = None,
    config: ConfigOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Write synthetic degraded/clean pairs (the Rain13k layout 'evaluate' reads)."""
    from dreamprune_cli.data.synthetic import write_synthetic_set

    ui = _make_ui(ctx, json_flag)
    resolved = _resolve(ctx, dict(task=task, count=count, size=size, out=out,
                                  clean_dir=clean_dir, seed=seed, overwrite=overwrite), config)
    s = resolved.settings
    if s.synth.task is None:
        raise UsageError("--task is required: derain, raindrop or dehaze")
    if s.common.out is None:
        raise UsageError("--out is required: the folder for input/, target/ and manifest.json")
    manifest = write_synthetic_set(s.synth.task, s.dream.count, s.dream.size, s.common.seed,
                                   s.common.out, clean_dir=s.dream.clean_dir,
                                   overwrite=s.common.overwrite, progress=ui.progress())
    out_dir = s.common.out
    ui.emit({"task": manifest["task"], "count": manifest["count"], "size": manifest["size"],
             "seed": manifest["seed"], "clean": manifest["clean"], "output": out_dir,
             "input_dir": out_dir / "input", "target_dir": out_dir / "target",
             "manifest": out_dir / "manifest.json"},
            make_table(f"synth {manifest['task']}", ["pairs", "size", "seed", "clean", "output"],
                       [[manifest["count"], manifest["size"], manifest["seed"],
                         manifest["clean"], out_dir]]))


def main() -> None:
    """Console-script entry point.

    Usage errors (unknown option, missing value) are one line on stderr when stderr is not a
    terminal (rich's box otherwise) and, with ``--json``, also the one JSON object on stdout.
    """
    json_mode = "--json" in sys.argv[1:]
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # click's usage errors (Typer vendors click)
        if type(exc).__name__ == "NoArgsIsHelpError":  # no arguments: the help text
            typer.echo(exc.ctx.get_help(), err=True)  # type: ignore[attr-defined]
            sys.exit(EXIT_USAGE)
        _usage_error(exc, json_mode)
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("error: aborted\n")
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:  # outside a command (e.g. while importing)
        sys.stderr.write("error: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: Any, json_mode: bool) -> None:
    """Show a click usage error: rich's box on a terminal, else one line; JSON with --json."""
    import json

    command = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "dreamprune"
    message = f"{exc.format_message()} ({command} --help for the options)"
    if sys.stderr.isatty():
        from typer import rich_utils

        rich_utils.rich_format_error(exc)
    else:
        sys.stderr.write("error: " + " ".join(message.split()) + "\n")
    if json_mode:
        sys.stdout.write(json.dumps({"error": " ".join(message.split()),
                                     "exit_code": exc.exit_code}) + "\n")
        sys.stdout.flush()
