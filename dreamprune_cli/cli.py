"""The ``dreamprune`` command line: declare options, resolve settings, call a run, render.

Every option is declared once (:data:`OPTIONS`); a subcommand names the options it takes,
resolves them into settings (preset < config file < ``DREAMPRUNE_*`` < flags), calls its run
(:mod:`dreamprune_cli.runs`) and prints the run's result. Nothing here computes anything;
errors from below name settings fields, which are spelled here as flags.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import io
import logging
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import (Annotated, Any, Literal, Optional, TypeVar, Union, get_args,
                    get_origin)

import typer
from rich.console import Console
from typer.core import TyperGroup, TyperOption

from dreamprune_cli import __version__
from dreamprune_cli.console import Ui, make_table, show_usage_error
from dreamprune_cli.errors import (EXIT_INTERRUPTED, EXIT_RUNTIME, EXIT_USAGE, DreampruneError,
                                   Interrupted)
from dreamprune_cli.interrupts import signals_as_interrupts
from dreamprune_cli.settings import (FIELD_SECTION, SECTIONS, ResolvedSettings,
                                     resolve_run_settings)

log = logging.getLogger("dreamprune_cli")


def _document_defaults(command: Any) -> None:
    """Append each setting's built-in default to its option's help (``[default: 0.58]``),
    read from the settings model so that help and behaviour cannot disagree. Options with a
    default of their own (``models --size``, not a setting) are left to Typer's."""
    for param in command.params:
        if (not isinstance(param, TyperOption) or param.name not in FIELD_SECTION
                or param.default is not None):
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


_DECLS = {"model": ("--model", "-m"), "weights": ("--weights", "-w"),
          "random_weights": ("--random-weights",), "non_strict": ("--non-strict/--strict",),
          "teacher_cache": ("--cache/--no-cache",)}
_EXTRA: dict[str, dict[str, Any]] = {"threads": {"min": 1}, "exclude": {"metavar": "GLOB"},
                                     "feat_layers": {"metavar": "GLOB"},
                                     "channel_multiple": {"metavar": "N"},
                                     "grid_crop": {"metavar": "N"}}


def _option_type(annotation: Any) -> Any:
    """What Typer parses for a settings field: its type without ``None``, choices as plain
    strings (the settings check them, with their messages)."""
    if get_origin(annotation) in (Union, UnionType):
        annotation = next(kind for kind in get_args(annotation) if kind is not type(None))
    return str if get_origin(annotation) is Literal else annotation


def _field_option(name: str) -> Any:
    """The option of settings field ``name``: unset by default (the settings decide), its
    description as help, ``--x/--no-x`` for a switch."""
    field = SECTIONS[FIELD_SECTION[name]].model_fields[name]
    kind = _option_type(field.annotation)
    flag = name.replace("_", "-")
    decls = _DECLS.get(name, (f"--{flag}/--no-{flag}",) if kind is bool else ())
    return Annotated[Optional[kind], typer.Option(*decls, help=field.description,
                                                  **_EXTRA.get(name, {}))]


# Every option, declared once from its settings field; subcommands name the ones they take.
OPTIONS: dict[str, Any] = {
    **{name: _field_option(name) for name in FIELD_SECTION if name != "model_kwargs"},
    "json_flag": Annotated[bool, typer.Option("--json", help="Print one JSON object on "
                                                             "stdout.")],
    "config": Annotated[Optional[Path], typer.Option(
        "--config", "-c", help="TOML settings file (see 'dreamprune config show').")],
    "onnx_size": Annotated[Optional[int], typer.Option(
        "--onnx-size", min=1, help="ONNX export: fix the input to 1x3xSxS (default: any "
                                   "batch, height and width).")],
}
JsonOpt, ConfigOpt = OPTIONS["json_flag"], OPTIONS["config"]
DeviceOpt, SeedOpt, ThreadsOpt = OPTIONS["device"], OPTIONS["seed"], OPTIONS["threads"]
LOADING = ("model", "variant", "weights")
TRUST = ("non_strict", "random_weights", "trust_checkpoint")
RUNTIME = ("device", "seed", "threads", "config", "json_flag")
SCORING = ("ssim_variant", "quantize", "pairing", "tile", "tile_overlap")
DREAMING = ("lambda_orth", "lambda_tv", "lambda_far", "noise_lr", "dream_init")
STUDENT_SCHEDULE = ("lr_schedule", "warmup_steps", "lr_min_ratio", "ema_decay")
FEATURES = ("lambda_feat", "feat_layers")
ADVERSARIAL = ("adversarial_eps", "adversarial_steps")
CUDA = ("amp", "channels_last")
F = TypeVar("F", bound=Callable[..., Any])


def _flag(field: str) -> str:
    """A settings field as the command line spells it (``flops_target`` -> ``--flops-target``)."""
    return "--" + field.replace("_", "-")


def _with_help(annotation: Any, help_text: str) -> Any:
    """``annotation`` with its option's help replaced."""
    kind, info = get_args(annotation)
    info = typer.models.OptionInfo(**{**vars(info), "help": help_text})
    return Annotated[kind, info]


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
    the one JSON object on stdout); Ctrl-C to 130, SIGTERM to 143. Under torchrun, refuse
    the commands that run in one process, and leave the process group at the end."""

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
            ui.fail(exc.spelled(_flag) + _resume_hint(exc.checkpoint, exc.resume_dir),
                    exc.exit_code,
                    checkpoint=exc.checkpoint, resume=exc.resume_dir)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            stop = exc if isinstance(exc, Interrupted) else Interrupted()
            what = "interrupted" if stop.signal_number == signal.SIGINT else \
                f"stopped by {signal.Signals(stop.signal_number).name}"
            ui.fail(what + _resume_hint(stop.checkpoint, stop.resume_dir), stop.exit_code,
                    checkpoint=stop.checkpoint, resume=stop.resume_dir)
            distributed.abandon(stop.exit_code)  # a rank of a group: exit now, no teardown
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


def _resume_hint(checkpoint: Path | None, resume_dir: Path | None) -> str:
    if checkpoint is None:
        return ""
    return f"; progress saved in {checkpoint} (continue with --resume {resume_dir})"


def _command(name: str, *options: str, target: typer.Typer = app,
             **changed: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``body(ctx, flags)`` as subcommand ``name`` taking ``options`` (names of
    :data:`OPTIONS`, in help order); ``changed`` gives an option another help text (a string)
    or another declaration (``(annotation, default)``; ``inspect.Parameter.empty``: required)."""

    def register(body: Callable[..., None]) -> Callable[..., None]:
        parameters = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                        annotation=typer.Context)]
        for option in options:
            annotation, default = OPTIONS[option], False if option == "json_flag" else None
            if isinstance(changed.get(option), str):
                annotation = _with_help(annotation, changed[option])
            elif option in changed:
                annotation, default = changed[option]
            parameters.append(inspect.Parameter(option, inspect.Parameter.KEYWORD_ONLY,
                                                default=default, annotation=annotation))

        def command(ctx: typer.Context, **flags: Any) -> None:
            body(ctx, flags)

        command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        command.__doc__, command.__name__ = body.__doc__, body.__name__
        target.command(name)(handle_errors(command))
        return body

    return register


def _settings(ctx: typer.Context, flags: dict[str, Any], default_model: str | None = None,
              command: str | None = None) -> tuple[Ui, ResolvedSettings]:
    """The command's output and its settings from every source
    (:func:`~dreamprune_cli.settings.resolve_run_settings`); subcommand options override the
    global ones (``json_flag`` and ``config`` are not settings fields)."""
    opts = _globals(ctx)
    ui = _make_ui(ctx, flags.pop("json_flag", False))
    config = flags.pop("config", None) or opts.config
    for name in ("exclude", "feat_layers"):  # an empty list: not given
        if name in flags:
            flags[name] = flags[name] or None
    for name in ("device", "seed", "threads"):
        if flags.get(name) is None:
            flags[name] = getattr(opts, name)
    return ui, resolve_run_settings(flags, config, command, default_model)


def _render(ui: Ui, result: Any) -> None:
    """Print a run's result: its summary as JSON with ``--json``, its tables otherwise."""
    ui.emit(result.summary(), *[make_table(t.title, t.columns, t.rows, t.caption)
                                for t in result.tables()])


def _run(ctx: typer.Context, flags: dict[str, Any], run: str,
         default_model: str | None = None, resumable: bool = False) -> None:
    """Resolve the settings, call ``dreamprune_cli.runs.<run>.run`` and render its result."""
    ui, resolved = _settings(ctx, flags, default_model, run if resumable else None)
    module = importlib.import_module(f"dreamprune_cli.runs.{run}")
    _render(ui, module.run(resolved, progress=ui.progress()))


@app.command("models")
@handle_errors
def models_command(
    ctx: typer.Context,
    variant: Annotated[str, typer.Option(help="Variant to count.")] = "official",
    size: Annotated[int, typer.Option(help="Square input side for MACs.")] = 256,
    json_flag: JsonOpt = False,
) -> None:
    """List the registered models with parameters and MACs at 3 x SIZE x SIZE."""
    from dreamprune_cli.runs import models

    _render(_make_ui(ctx, json_flag), models.run(variant, size))


@_command("show", "model", "config", "json_flag", target=config_app)
def config_show(ctx: typer.Context, flags: dict[str, Any]) -> None:
    """Print the resolved settings and where each value came from."""
    from dreamprune_cli.models.registry import get_model_info, list_models

    ui, resolved = _settings(ctx, flags)
    values, sources = resolved.flat(), dict(resolved.sources)
    model = values.get("model")
    model_defaults: dict[str, Any] = {}
    if model in list_models():  # the scoring protocol left unset falls to the model's entry
        info = get_model_info(model)
        for name, attribute in _MODEL_PROTOCOL.items():
            if values.get(name) is None:
                model_defaults[name] = values[name] = getattr(info, attribute)
                sources[name] = f"model {model} (registry)"
    rows = [[f"{FIELD_SECTION[n]}.{n}", values[n], sources[n]] for n in FIELD_SECTION]
    ui.emit({"settings": {s: getattr(resolved.settings, s).model_dump(mode="json")
                          for s in SECTIONS},
             "sources": resolved.sources, "model_defaults": model_defaults},
            make_table("settings", ["field", "value", "source"], rows))


_MODEL_PROTOCOL = {"metric_space": "metric_space", "crop_border": "crop_border",
                   "ssim_variant": "ssim_variant", "quantize": "quantization"}
"""Scoring settings whose unset value means the model's registry entry (setting -> field)."""


@_command("evaluate", *LOADING, "input_dir", "target_dir", "metric_space", "crop_border",
          *SCORING, "save_dir", "limit", *TRUST, "overwrite", *RUNTIME)
def evaluate_command(ctx: typer.Context, flags: dict[str, Any]) -> None:
    """Score a model on degraded/clean pairs: PSNR and SSIM as the field reports them."""
    _run(ctx, flags, "evaluate")


@_command("export", "weights", "out", "model", "variant", "non_strict", "trust_checkpoint",
          "overwrite", "onnx_size", "config", "json_flag",
          weights=(Annotated[Path, typer.Option("--weights", "-w",
                                                help="Checkpoint to convert.")],
                   inspect.Parameter.empty),
          out=(Annotated[Path, typer.Option(
              help="Destination: .safetensors (weights and model metadata) or .onnx "
                   "(deployment; needs the [onnx] extra).")], inspect.Parameter.empty))
def export_command(ctx: typer.Context, flags: dict[str, Any]) -> None:
    """Convert any accepted checkpoint to safetensors carrying the model name and config, or
    to ONNX for deployment."""
    from dreamprune_cli.runs import export

    out, onnx_size = flags.pop("out"), flags.pop("onnx_size")
    export.check_destination(out)
    ui, resolved = _settings(ctx, flags)
    _render(ui, export.run(resolved, out, onnx_size))


@_command("prune", *LOADING, "flops_target", "latency_target", "allocator", "granularity", "channel_multiple",
          "out", "flops_size", "exclude", "default_exclude", "calibration", "calibration_count",
          "min_keep", "calibration_size", "depth_calibration_size", "reconstruct",
          "reconstruct_count", "reconstruct_size", "reconstruct_ridge", *TRUST, "overwrite",
          *RUNTIME,
          out="Output folder: student.safetensors, masks.safetensors, report.json. "
              "[required]")
def prune_command(ctx: typer.Context, flags: dict[str, Any]) -> None:
    """Prune a model to keep exactly a fraction of its MACs (masks, channels, blocks or stages)."""
    from dreamprune_cli.runs import prune

    ui, resolved = _settings(ctx, flags)
    result = prune.run(resolved, progress=ui.progress())
    if not ui.quiet:
        layers = result.layer_table()
        ui.print_table(make_table(layers.title, layers.columns, layers.rows), stderr=True)
    _render(ui, result)


@_command("dream", "save_dir", *LOADING, "count", "size", "steps", "batch_size", "clean_dir",
          "scenes",
          *DREAMING, "representation", "resume", "overwrite", *TRUST, *CUDA, *RUNTIME,
          save_dir="Folder for the dreams. [required, unless --resume]")
def dream_command(ctx: typer.Context, flags: dict[str, Any]) -> None:
    """Invert the teacher: optimise noise into degraded images it restores to clean ones."""
    _run(ctx, flags, "dream", default_model="ffa", resumable=True)


@_command("distill", "student", "out", "dreams", *LOADING, "steps", "batch_size", "size",
          "round_steps", "clean_dir", "scenes", "student_lr", "lambda_kd", "inputs", *ADVERSARIAL,
          *STUDENT_SCHEDULE,
          *FEATURES, *DREAMING, "checkpoint_every", "resume", "overwrite", *TRUST, *CUDA, *RUNTIME)
def distill_command(ctx: typer.Context, flags: dict[str, Any]) -> None:
    """Train a pruned student to match the teacher on dreamed inputs (or --inputs).

    Required: --model (the teacher), --student and --out (or --resume). The student is
    scored on the synthetic test set of the teacher's task; score it on your own pairs
    with 'dreamprune evaluate --weights OUT/student.safetensors'.
    """
    _run(ctx, flags, "distill", resumable=True)


@_command("pipeline", *LOADING, "flops_target", "latency_target", "allocator", "granularity",
          "channel_multiple", "flops_size", "exclude", "steps", "batch_size", "size",
          "round_steps", "min_keep", "depth_calibration_size", "reconstruct",
          "reconstruct_count", "reconstruct_size", "reconstruct_ridge", "calibration_source",
          "calibration_steps", "clean_dir",
          "scenes", "student_lr", "lambda_kd", "inputs", *ADVERSARIAL, *STUDENT_SCHEDULE,
          *FEATURES, *DREAMING, "out",
          "eval_input_dir", "eval_target_dir", *SCORING, "limit", "grid_crop", "teacher_cache",
          "prune_only", "checkpoint_every", "resume",
          "overwrite", *TRUST, *CUDA, *RUNTIME,
          out="Output folder (default runs/<model>-<timestamp>).")
def pipeline_command(ctx: typer.Context, flags: dict[str, Any]) -> None:
    """Prune to a FLOPs target, dream + distill, evaluate, report: the whole method."""
    _run(ctx, flags, "pipeline", default_model="ffa", resumable=True)


@_command("synth", "task", "count", "size", "out", "clean_dir", "scenes", "seed", "overwrite",
          "config",
          "json_flag", count="Number of pairs (default 16).",
          size="Side of the square images in pixels (default 64).",
          out="Output folder: input/, target/ and manifest.json. [required]",
          clean_dir="Crop clean images from this folder instead of procedural scenes.")
def synth_command(ctx: typer.Context, flags: dict[str, Any]) -> None:
    """Write synthetic degraded/clean pairs (the Rain13k layout 'evaluate' reads)."""
    _run(ctx, flags, "synth")


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
        show_usage_error(exc, json_mode)
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("error: aborted\n")
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:  # outside a command (e.g. while importing)
        sys.stderr.write("error: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)
