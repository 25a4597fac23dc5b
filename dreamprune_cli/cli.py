"""The ``dreamprune`` command line: parse, resolve settings, call the engine, print.

Nothing here computes anything; every subcommand is a call into the engine that a Python
user can make without Typer.
"""

from __future__ import annotations

import functools
import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer

from dreamprune_cli import __version__
from dreamprune_cli.console import Ui, make_table
from dreamprune_cli.errors import EXIT_INTERRUPTED, EXIT_RUNTIME, DreampruneError, UsageError
from dreamprune_cli.settings import FIELD_SECTION, SECTIONS, ResolvedSettings, resolve_settings

log = logging.getLogger("dreamprune_cli")

app = typer.Typer(name="dreamprune", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  help="Compress image-restoration networks without their training data: "
                       "dream degraded inputs, prune, distill.")
config_app = typer.Typer(no_args_is_help=True, help="Inspect the resolved settings.")
app.add_typer(config_app, name="config")

SAMPLE_DIR = Path(__file__).resolve().parent / "assets" / "sample"


@dataclass
class GlobalOptions:
    device: str | None = None
    seed: int | None = None
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
NonStrictOpt = Annotated[Optional[bool], typer.Option(
    "--non-strict", help="Load the weights that fit, skipping missing/unexpected keys.")]
TrustOpt = Annotated[Optional[bool], typer.Option(
    "--trust-checkpoint", help="Allow full unpickling (may run code from the file).")]
OverwriteOpt = Annotated[Optional[bool], typer.Option(
    "--overwrite", help="Replace existing output files.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
DeviceOpt = Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N.")]
SeedOpt = Annotated[Optional[int], typer.Option(help="Random seed.")]
ConfigOpt = Annotated[Optional[Path], typer.Option(
    "--config", "-c", help="TOML settings file (see 'dreamprune config show').")]

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
    json_output: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                          help="Debug logs; tracebacks on errors.")] = False,
    config: ConfigOpt = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Global options apply to every subcommand."""
    ctx.obj = GlobalOptions(device, seed, json_output, quiet, verbose, config)


def _globals(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def _make_ui(ctx: typer.Context, json_flag: bool = False) -> Ui:
    opts = _globals(ctx)
    return Ui(json_output=opts.json_output or json_flag, quiet=opts.quiet, verbose=opts.verbose)


def handle_errors(command: F) -> F:
    """Map expected errors to one stderr line and their exit code; Ctrl-C to 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.get("ctx") or next(a for a in args if isinstance(a, typer.Context))
        opts = _globals(ctx)
        ui = Ui(quiet=opts.quiet, verbose=opts.verbose)
        try:
            return command(*args, **kwargs)
        except DreampruneError as exc:
            if opts.verbose:
                ui.stderr.print(traceback.format_exc(), markup=False, highlight=False)
            ui.error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            ui.error("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: say so in one line, trace with --verbose
            if opts.verbose:
                ui.stderr.print(traceback.format_exc(), markup=False, highlight=False)
            ui.error(f"internal error: {type(exc).__name__}: {exc} (run with --verbose for "
                     "the traceback)")
            raise typer.Exit(EXIT_RUNTIME) from None

    return wrapper  # type: ignore[return-value]


def _resolve(ctx: typer.Context, flags: dict[str, Any], config: Path | None = None,
             default_model: str | None = None) -> ResolvedSettings:
    """Settings from every source; subcommand flags override the global ones."""
    opts = _globals(ctx)
    merged = {"device": opts.device, "seed": opts.seed, **flags}
    if merged.get("device") is None:
        merged["device"] = opts.device
    if merged.get("seed") is None:
        merged["seed"] = opts.seed
    return resolve_settings(merged, config=config or opts.config, default_model=default_model)


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
        help="Clean targets with the same file stems.")] = None,
    metric_space: Annotated[Optional[str], typer.Option(
        help="y (BT.601 luma) or rgb; default: the model's.")] = None,
    crop_border: Annotated[Optional[int], typer.Option(help="Pixels cropped per side.")] = None,
    save_dir: Annotated[Optional[Path], typer.Option(help="Write restored PNGs here.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N pairs.")] = None,
    non_strict: NonStrictOpt = None,
    trust_checkpoint: TrustOpt = None,
    overwrite: OverwriteOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    config: ConfigOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Score a model on degraded/clean pairs: PSNR and SSIM as the field reports them."""
    from dreamprune_cli.data.pairs import pair_folders
    from dreamprune_cli.engine.device import resolve_device
    from dreamprune_cli.engine.evaluate import evaluate_pairs
    from dreamprune_cli.models.loading import load_model

    ui = _make_ui(ctx, json_flag)
    resolved = _resolve(ctx, dict(
        model=model, variant=variant, weights=weights, input_dir=input_dir,
        target_dir=target_dir, metric_space=metric_space, crop_border=crop_border,
        save_dir=save_dir, limit=limit, non_strict=non_strict,
        trust_checkpoint=trust_checkpoint, overwrite=overwrite, device=device, seed=seed),
        config)
    s = resolved.settings
    common, ev = s.common, s.evaluate
    if (ev.input_dir is None) != (ev.target_dir is None):
        raise UsageError("--input-dir and --target-dir go together (or give neither to use "
                         "the bundled sample)")
    input_root, target_root = ev.input_dir, ev.target_dir
    if input_root is None:
        input_root, target_root = SAMPLE_DIR / "input", SAMPLE_DIR / "target"
        log.info("no --input-dir/--target-dir: evaluating on the bundled sample (%s)", SAMPLE_DIR)
    pairs = pair_folders(input_root, target_root, limit=ev.limit)  # type: ignore[arg-type]
    device_ = resolve_device(common.device)
    loaded = load_model(common.model, common.variant, common.weights,
                        strict=not common.non_strict, trust=common.trust_checkpoint,
                        overrides=common.model_kwargs)
    space = ev.metric_space or loaded.info.metric_space
    border = ev.crop_border if ev.crop_border is not None else loaded.info.crop_border
    result = evaluate_pairs(loaded.adapter(), pairs, space, border, device_,
                            save_dir=common.save_dir, overwrite=common.overwrite,
                            progress=ui.progress())
    data = {"model": loaded.name, "weights": loaded.weights, "device": str(device_),
            **result.as_dict(), "input_dir": input_root, "target_dir": target_root}
    table = make_table(
        f"evaluate {loaded.name} ({space.upper() if space == 'y' else 'RGB'}, crop {border})",
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
    from dreamprune_cli.models.loading import load_model, save_model

    ui = _make_ui(ctx, json_flag)
    if out.suffix != ".safetensors":
        raise UsageError(f"--out {out}: expected a .safetensors file name")
    resolved = _resolve(ctx, dict(model=model, variant=variant, weights=weights,
                                  non_strict=non_strict, trust_checkpoint=trust_checkpoint,
                                  overwrite=overwrite), config)
    common = resolved.settings.common
    loaded = load_model(common.model, common.variant, common.weights,
                        strict=not common.non_strict, trust=common.trust_checkpoint,
                        overrides=common.model_kwargs)
    path = save_model(loaded, out, overwrite=common.overwrite)
    tensors = len(loaded.network.state_dict())
    ui.emit({"model": loaded.name, "config": loaded.config, "weights": weights,
             "output": path, "tensors": tensors},
            make_table("export", ["model", "tensors", "output"], [[loaded.name, tensors, path]]))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # outside a command (e.g. while importing)
        sys.stderr.write("error: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
