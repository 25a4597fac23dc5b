"""Layer-wise least-squares repair of a pruned student, before any training.

After a structured cut a layer of the student sees fewer (and, downstream of earlier cuts,
different) input channels than the teacher's layer of the same name. Reconstruction asks each
layer, in forward order, to reproduce the teacher's output *at the channels it kept* from the
inputs it actually receives in the already-repaired student, and solves for its weights:

    min_{W, b}  sum_rows || X W + 1 b^T - Y ||^2  +  lambda ||W||^2

* ``X`` (rows x D): the student layer's own input, unfolded as the convolution reads it
  (``torch.nn.functional.unfold`` with its kernel, stride, dilation and padding; D =
  ``C_in * kh * kw``), one row per output position and image; a linear layer's input rows.
* ``Y`` (rows x C_kept): the teacher's same layer's output at the same positions, at the
  output channels the student kept (:func:`~dreamprune_cli.prune.channel_map.
  teacher_channels`), before any activation that follows.
* ``b``: the layer's bias when it has one, not regularised. With the intercept the solve
  also moves the removed input channels' mean contribution into the bias: FLAP's bias
  compensation (An et al., AAAI 2024), here as part of the least-squares fit.
* ``lambda = ridge * mean(diag(X^T X))`` over the weight columns (ridge 1e-3 by default),
  so that the regularisation is relative to the inputs' energy and the solve stays well
  posed for channels that are nearly constant or collinear.

This is the reconstruction step of channel pruning by He, Zhang and Sun (ICCV 2017: LASSO
channel selection, then least squares on the kept channels) and of ThiNet (Luo, Wu and Lin,
ICCV 2017: least squares on the next layer's output), applied to every layer in forward
order so that each layer corrects the errors of those before it.

Statistics: ``X^T X``, ``X^T Y`` and ``sum Y^2`` are accumulated in float64 over the
calibration batches and a random subset of output positions per image and call
(``positions``; all of them for small outputs), so memory does not grow with the image
size. A layer that runs several times in one forward (PReNet's recurrent stages, shared
blocks) gathers every call, paired call by call with the teacher's from the last one back:
the student's last call with the teacher's last. A depth student that runs fewer repeated
stages than its teacher (PReNet run for 4 of its 6) is repaired against the teacher run for
as many stages (:func:`stage_matched_teacher`): pairing its stage ``k`` with a later stage of
the full teacher asked shared weights for two different things and only added drift
(PReNet6, 2026-12-07), while the truncated teacher is what the student's channel cuts
departed from. A student that computes exactly what its reference computes (a cut of stages
alone) has nothing to repair and is returned unchanged. The relative error of a layer,
``||X W - Y|| / ||Y||`` on those rows, is reported before and after; a solve that does not
lower it is refused (the layer keeps its weights; a bias-only compensation is tried first
where the layer has a bias). When the
repaired student's output drifts further from the teacher's than before on the calibration
images, every layer is restored.

Only ``Conv2d`` layers with ``groups=1`` and ``Linear`` layers are solved; grouped and
depthwise convolutions, transposed and 1-D/3-D convolutions are left unchanged (named in the
report).

**Masked (unstructured) students.** A layer whose weight carries a mask (a
``torch.nn.utils.parametrize`` parametrization that multiplies it, as
:mod:`~dreamprune_cli.prune.unstructured.masks` attaches) keeps its mask: each output
channel ``o`` is solved on its own over the weights its mask kept, ``S_o``,

    min_{w_o, b_o}  || X[:, S_o] w_o + 1 b_o - Y[:, o] ||^2  +  lambda ||w_o||^2

(the sub-matrix of the same ``X^T X``; the pruned weights stay exactly zero), except that
the ridge pulls towards the layer's current weights, ``lambda ||w_o - w_o^now||^2``: a freshly
masked student's weights are the teacher's, so a weight whose input the calibration images
never excite (a ReLU channel that stays at zero on them) keeps its current value instead of
shrinking to zero. :func:`reconstruct_student` does the same for the unmasked layers of a
masked student (its dense first and last convolutions). This is the
mask-fixed least squares of SparseGPT (Frantar and Alistarh, ICML 2023) and OBC (Frantar
et al., NeurIPS 2022), solved exactly per row instead of by their approximate
column-by-column updates; every channel is kept, so ``Y`` is the teacher's whole output.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from dreamprune_cli.data.calibration import synthetic_calibration
from dreamprune_cli.models.adapter import RestorationAdapter
from dreamprune_cli.models.channel_map import ChannelMap, mapped_layers
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.models.resize import unshare_modules
from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.prune.channel_map import teacher_channels
from dreamprune_cli.prune.spec import (DEFAULT_RECONSTRUCT_COUNT, DEFAULT_RECONSTRUCT_RIDGE,
                                      DEFAULT_RECONSTRUCT_SIZE)

log = logging.getLogger(__name__)

POSITIONS = 1024
"""Default output positions sampled per image and call of each layer (rows are cheap next to
the forward passes that produce them: the cost is one student forward per layer)."""

BATCH_SIZE = 4
"""Calibration images run together."""

# the calibration's defaults (DEFAULT_RECONSTRUCT_COUNT images of DEFAULT_RECONSTRUCT_SIZE px,
# prune/spec.py): 32 images x 6 calls x 1024 positions = 197k rows per layer of PReNet, against
# at most 577 unknowns per output channel


class _Stop(Exception):
    """Raised by a hook to end a forward pass once its layer has seen every call it needs."""


class _Mismatch(Exception):
    """A student call whose output does not line up with the teacher's call."""


@dataclass
class LayerRepair:
    """What reconstruction did to one layer.

    Attributes:
        name: the layer's dotted module name.
        status: ``solved`` (least squares applied), ``bias`` (bias compensation only),
            ``kept`` (refused: neither lowered the error) or ``skipped`` (see ``reason``).
        reason: why a layer was skipped or kept.
        calls: student calls paired with teacher calls, per forward pass.
        rows: rows of the least-squares problem (sampled positions x images x calls).
        error_before, error_after: relative error ``||X W - Y|| / ||Y||`` on those rows with
            the weights before and after (``None`` for skipped layers).
    """

    name: str
    status: str
    reason: str = ""
    calls: int = 0
    rows: int = 0
    error_before: float | None = None
    error_after: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {"layer": self.name, "status": self.status, "reason": self.reason,
                "calls": self.calls, "rows": self.rows, "error_before": self.error_before,
                "error_after": self.error_after}


def _fidelity_db(mse: float) -> float:
    return math.inf if mse <= 0 else 10 * math.log10(1.0 / mse)


@dataclass
class ReconstructionReport:
    """The outcome of :func:`reconstruct`.

    Attributes:
        seconds: wall time.
        images: calibration images; ``size``: their ``(H, W)``.
        positions: output positions sampled per image and call.
        ridge: ridge strength relative to ``mean(diag(X^T X))``.
        layers: one entry per convolution and linear layer of the student, forward order
            first (layers never called last).
        mse_before, mse_after: mean squared difference between the student's and the
            teacher's outputs on the calibration images (RGB in [0, 1], not clamped), before
            and after (after equals before when ``reverted``).
        reverted: the repaired student drifted more than before, so every layer was restored.
    """

    seconds: float
    images: int
    size: tuple[int, int]
    positions: int
    ridge: float
    layers: list[LayerRepair] = field(default_factory=list)
    mse_before: float = 0.0
    mse_after: float = 0.0
    reverted: bool = False

    @property
    def fidelity_db_before(self) -> float:
        """PSNR (dB, peak 1) of the student's output against the teacher's, before."""
        return _fidelity_db(self.mse_before)

    @property
    def fidelity_db_after(self) -> float:
        """PSNR (dB, peak 1) of the student's output against the teacher's, after."""
        return _fidelity_db(self.mse_after)

    def count(self, status: str) -> int:
        """Layers with ``status``."""
        return sum(layer.status == status for layer in self.layers)

    def as_dict(self) -> dict[str, object]:
        return {"seconds": self.seconds, "images": self.images, "size": list(self.size),
                "positions": self.positions, "ridge": self.ridge,
                "mse_before": self.mse_before, "mse_after": self.mse_after,
                "fidelity_db_before": self.fidelity_db_before,
                "fidelity_db_after": self.fidelity_db_after, "reverted": self.reverted,
                "solved": self.count("solved"), "bias_only": self.count("bias"),
                "kept": self.count("kept"), "skipped": self.count("skipped"),
                "layers": [layer.as_dict() for layer in self.layers]}

    def describe(self) -> str:
        """One line for the log."""
        return (f"reconstruction: {self.count('solved')} layers solved, {self.count('bias')} "
                f"bias-only, {self.count('kept')} kept, {self.count('skipped')} skipped; "
                f"fidelity to the teacher {self.fidelity_db_before:.2f} -> "
                f"{self.fidelity_db_after:.2f} dB (MSE {self.mse_before:.3g} -> "
                f"{self.mse_after:.3g}) on {self.images} images of "
                f"{self.size[0]}x{self.size[1]} in {self.seconds:.1f} s"
                + (" (reverted: the output drifted more)" if self.reverted else ""))


@dataclass
class _Target:
    """The teacher's output of one call at sampled positions.

    ``index``: ``(B, P)`` flat output positions per image (convolutions) or ``(P,)`` row
    indices (linear); ``values``: ``(rows, C_kept)`` float32; ``shape``: the output's
    spatial shape ``(Ho, Wo)`` (convolutions) or its row count (linear).
    """

    index: torch.Tensor
    values: torch.Tensor
    shape: tuple[int, ...]


def _unsupported(module: nn.Module) -> str:
    """Why reconstruction leaves ``module`` unchanged ("" when it can solve it)."""
    if isinstance(module, nn.Linear):
        return ""
    if not isinstance(module, nn.Conv2d):
        return f"{type(module).__name__}: only Conv2d and Linear layers are solved"
    if module.groups != 1:
        return f"grouped convolution (groups={module.groups}) left unchanged"
    return ""


def _sample(module: nn.Module, output: torch.Tensor, channels: torch.Tensor, positions: int,
            generator: torch.Generator) -> _Target:
    """The teacher output of one call at ``positions`` random positions per image."""
    output = output.detach()
    if isinstance(module, nn.Linear):
        rows = output.reshape(-1, output.shape[-1])
        count = rows.shape[0]
        index = torch.randperm(count, generator=generator)[:positions * max(1, output.shape[0])]
        index = index.sort().values
        return _Target(index, rows[index.to(rows.device)][:, channels].float().cpu(), (count,))
    batch, _, height, width = output.shape
    flat = output[:, channels].reshape(batch, len(channels), height * width)
    if height * width <= positions:
        index = torch.arange(height * width).expand(batch, -1)
    else:
        index = torch.stack([torch.randperm(height * width, generator=generator)[:positions]
                             for _ in range(batch)])
    picked = flat.gather(2, index.to(flat.device).unsqueeze(1).expand(-1, len(channels), -1))
    values = picked.permute(0, 2, 1).reshape(-1, len(channels))
    return _Target(index, values.float().cpu(), (height, width))


def _input_rows(module: nn.Module, x: torch.Tensor, output: torch.Tensor,
                target: _Target) -> torch.Tensor:
    """The rows of ``X`` for one call: ``(rows, D)`` float64, at the target's positions.

    Raises:
        _Mismatch: the student's output of this call is not shaped like the teacher's.
    """
    if isinstance(module, nn.Linear):
        rows = x.reshape(-1, x.shape[-1])
        if (rows.shape[0],) != target.shape:
            raise _Mismatch(f"{rows.shape[0]} rows, the teacher's call {target.shape[0]}")
        return rows[target.index.to(rows.device)].double()
    if tuple(output.shape[-2:]) != target.shape:
        raise _Mismatch(f"output {tuple(output.shape[-2:])}, the teacher's {target.shape}")
    mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
    padded = F.pad(x, module._reversed_padding_repeated_twice, mode=mode)
    rows = []
    for image in range(x.shape[0]):  # one image at a time: an unfolded image is D x H x W
        columns = F.unfold(padded[image:image + 1], module.kernel_size,
                           dilation=module.dilation, stride=module.stride)[0]
        if columns.shape[1] != target.shape[0] * target.shape[1]:
            raise _Mismatch(f"{columns.shape[1]} positions unfolded, the output has "
                            f"{target.shape[0] * target.shape[1]}")
        rows.append(columns[:, target.index[image].to(columns.device)].T)
    return torch.cat(rows).double()


@dataclass
class _Normal:
    """Accumulated normal equations of one layer (float64, CPU)."""

    xtx: torch.Tensor | None = None  # (D', D'), D' = D (+ 1 with a bias)
    xty: torch.Tensor | None = None  # (D', C_kept)
    yy: float = 0.0
    rows: int = 0

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = x.cpu(), y.double()
        if self.xtx is None:
            self.xtx = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
            self.xty = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64)
        self.xtx += x.T @ x
        self.xty += x.T @ y
        self.yy += float((y * y).sum())
        self.rows += x.shape[0]

    def error(self, w: torch.Tensor) -> float:
        """``||X W - Y|| / ||Y||`` from the statistics alone."""
        assert self.xtx is not None and self.xty is not None
        squared = float((w * (self.xtx @ w)).sum() - 2 * (w * self.xty).sum()) + self.yy
        return math.sqrt(max(squared, 0.0) / self.yy) if self.yy > 0 else math.sqrt(
            max(squared, 0.0))


def weight_support(module: nn.Module) -> torch.Tensor | None:
    """``(D, C_out)`` bool: which of the layer's weights its mask keeps, laid out as
    :func:`_weights` lays them out (no bias row); ``None`` for a layer without a mask. The
    mask is read by applying the weight's parametrizations to ones (exact for masks that
    multiply, :class:`~dreamprune_cli.prune.unstructured.masks.WeightMask`)."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    original = module.parametrizations["weight"].original
    with torch.no_grad():
        applied = torch.ones_like(original)
        for parametrization in module.parametrizations["weight"]:
            applied = parametrization(applied)
    return (applied != 0).reshape(applied.shape[0], -1).T.cpu()


def _weights(module: nn.Module) -> torch.Tensor:
    """The layer's weights as ``(D', C_out)`` float64, its bias as the last row."""
    w = module.weight.detach().reshape(module.weight.shape[0], -1).T.double().cpu()
    if module.bias is not None:
        w = torch.cat([w, module.bias.detach().double().cpu()[None]])
    return w


def _assign(module: nn.Module, w: torch.Tensor) -> None:
    """Write ``w`` (:func:`_weights`' layout) into the layer; a masked layer's unmasked
    weight is written (its mask stays and multiplies it)."""
    with torch.no_grad():
        body = w[:-1] if module.bias is not None else w
        target = module.parametrizations["weight"].original \
            if parametrize.is_parametrized(module, "weight") else module.weight
        target.copy_(body.T.reshape(target.shape).to(target))
        if module.bias is not None:
            module.bias.copy_(w[-1].to(module.bias))


def _solve(normal: _Normal, module: nn.Module, ridge: float, toward_current: bool = False
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The ridge solution and, for a layer with a bias, the bias-only compensation. The
    ridge pulls towards zero, or towards the layer's current weights when
    ``toward_current`` or the layer is masked (each output channel then solved over the
    weights its mask kept)."""
    assert normal.xtx is not None and normal.xty is not None
    has_bias = module.bias is not None
    size = normal.xtx.shape[0] - int(has_bias)
    diagonal = torch.diagonal(normal.xtx)[:size]
    strength = ridge * float(diagonal.mean()) if size else 0.0
    if strength <= 0:
        strength = ridge
    penalty = torch.full((normal.xtx.shape[0],), strength, dtype=torch.float64)
    if has_bias:
        penalty[-1] = 0.0  # the intercept is not shrunk
    system = normal.xtx + torch.diag(penalty)
    support = weight_support(module)
    current = _weights(module)
    # towards the current weights: (X^T X + L) w = X^T y + L w_now; towards zero: X^T y
    rhs_all = normal.xty + current * penalty[:, None] \
        if toward_current or support is not None else normal.xty
    if support is None:
        solved = _solve_system(system, rhs_all)
    else:  # one solve per output channel over the weights its mask kept (and the bias)
        solved = torch.zeros_like(normal.xty)
        extra = torch.ones(int(has_bias), dtype=torch.bool)
        for column in range(normal.xty.shape[1]):
            rows = torch.cat([support[:, column], extra]).nonzero().flatten()
            if rows.numel():
                solved[rows, column] = _solve_system(system[rows][:, rows],
                                                     rhs_all[rows, column:column + 1])[:, 0]
    compensated = None
    if has_bias:  # optimal bias with the weights fixed: the mean residual moves into it
        sum_x = normal.xtx[-1, :size]  # the ones column times X
        sum_y = normal.xty[-1]
        compensated = current.clone()
        compensated[-1] = (sum_y - sum_x @ current[:size]) / normal.rows
    return solved, compensated


def _solve_system(system: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``system^-1 rhs``; the least-norm solution when ``system`` is singular despite the
    ridge (e.g. ridge 0)."""
    try:
        return torch.linalg.solve(system, rhs)
    except RuntimeError:
        return torch.linalg.lstsq(system, rhs).solution


def _forward(adapter: nn.Module, batch: torch.Tensor) -> torch.Tensor | None:
    """``adapter(batch)``, or ``None`` when a hook ended the pass early."""
    try:
        with torch.no_grad():
            return adapter(batch)
    except _Stop:
        return None


def _drift(adapter: nn.Module, batches: list[torch.Tensor],
           reference: list[torch.Tensor]) -> float:
    squared = 0.0
    for batch, want in zip(batches, reference):
        out = _forward(adapter, batch)
        assert out is not None
        if out.shape != want.shape:
            raise ValueError(f"the student's output is shaped {tuple(out.shape)}, the "
                             f"teacher's {tuple(want.shape)}: a pruned student keeps the "
                             "teacher's output channels")
        squared += float(((out.float() - want) ** 2).sum())
    return squared / sum(r.numel() for r in reference)


def _comparable_teacher(teacher: nn.Module) -> nn.Module:
    """``teacher``, or a copy with one module per place when it shares modules between names
    (as channel-pruned students do, :func:`~dreamprune_cli.models.resize.unshare_modules`)."""
    everywhere = list(teacher.named_modules(remove_duplicate=False))
    if len(everywhere) == len(list(teacher.named_modules())):
        return teacher
    teacher = copy.deepcopy(teacher)
    unshare_modules(teacher)
    return teacher


def reconstruct(teacher: nn.Module, student: nn.Module, calibration: torch.Tensor,
                kept: ChannelMap, wrap: Callable[[nn.Module], nn.Module] | None = None,
                ridge: float = DEFAULT_RECONSTRUCT_RIDGE, positions: int = POSITIONS,
                batch_size: int = BATCH_SIZE, seed: int = 0,
                progress: ProgressSink | None = None,
                toward_current: bool = False) -> ReconstructionReport:
    """Repair ``student``'s layers in place by ridge least squares (module docstring).

    Args:
        teacher: the bare teacher network (not modified).
        student: the bare pruned student: the teacher's layer names, thinner or fewer
            layers, or masked weights; modified in place (masks kept).
        calibration: ``(N, 3, H, W)`` float32 images in [0, 1] (what ``wrap``'s modules take),
            on the networks' device.
        kept: the student's kept-channel map (:func:`~dreamprune_cli.prune.channel_map.
            teacher_channels`): output channel ``j`` of a student layer is the teacher's
            ``kept[layer].outputs[j]``.
        wrap: bare network -> module taking the calibration images (e.g.
            :class:`~dreamprune_cli.models.adapter.RestorationAdapter`); ``None`` calls the
            networks directly.
        ridge: ``lambda = ridge * mean(diag(X^T X))`` (0 solves plain least squares).
        positions: output positions sampled per image and call (all when fewer).
        batch_size: calibration images run together.
        seed: seeds the position sampling.
        progress: receives one step per layer.
        toward_current: the ridge of every layer pulls towards its current weights (masked
            layers' always do), not towards zero.

    Returns:
        The report: per-layer errors before and after, the output drift before and after.
        The teacher's sampled outputs are held for every layer at once: about
        ``N * calls * positions * C_kept * 4`` bytes per layer.

    Raises:
        ValueError: ``calibration`` is not a float ``(N, C, H, W)`` batch, ``positions``,
            ``batch_size`` or ``ridge`` out of range, or the student's output is not shaped
            like the teacher's.
    """
    start = time.perf_counter()
    if not (calibration.is_floating_point() and calibration.dim() == 4
            and calibration.shape[0] > 0):
        raise ValueError(f"calibration: expected float images (N, C, H, W), got "
                         f"{calibration.dtype} {tuple(calibration.shape)}")
    if positions < 1 or batch_size < 1 or ridge < 0:
        raise ValueError(f"positions {positions} and batch_size {batch_size} must be at least "
                         f"1 and ridge {ridge} non-negative")
    wrap = wrap or (lambda network: network)
    teacher = _comparable_teacher(teacher)
    teacher_layers, student_layers = mapped_layers(teacher), mapped_layers(student)
    repairs: dict[str, LayerRepair] = {}
    candidates: list[str] = []
    for name, module in student_layers.items():
        reason = _unsupported(module)
        if not reason and name not in kept:
            reason = "not in the kept-channel map"
        if not reason and name not in teacher_layers:
            reason = "the teacher has no layer of this name"
        if not reason and len(kept[name].outputs) != (module.out_features
                                                      if isinstance(module, nn.Linear)
                                                      else module.out_channels):
            reason = "the kept-channel map does not fit its output channels"
        if reason:
            repairs[name] = LayerRepair(name, "skipped", reason)
        else:
            candidates.append(name)
    teacher_adapter, student_adapter = wrap(teacher).eval(), wrap(student).eval()
    batches = list(calibration.split(batch_size))
    generator = torch.Generator().manual_seed(seed)

    # 1. the teacher, once: its output, and every candidate's sampled outputs per call
    targets: dict[str, list[list[_Target]]] = {name: [] for name in candidates}
    reference: list[torch.Tensor] = []
    channel_index = {name: torch.tensor(kept[name].outputs, dtype=torch.long)
                     for name in candidates}
    for batch in batches:
        calls: dict[str, list[_Target]] = {name: [] for name in candidates}

        def record(name: str) -> Callable:
            module = teacher_layers[name]

            def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
                index = channel_index[name].to(output.device)
                calls[name].append(_sample(module, output, index, positions, generator))
            return hook

        hooks = [teacher_layers[name].register_forward_hook(record(name))
                 for name in candidates]
        try:
            out = _forward(teacher_adapter, batch)
        finally:
            for handle in hooks:
                handle.remove()
        assert out is not None
        reference.append(out.detach().float())
        for name in candidates:
            targets[name].append(calls[name])
    held = sum(t.values.numel() * 4 for per in targets.values() for b in per for t in b)
    log.debug("reconstruction: the teacher's sampled outputs hold %.1f MB", held / 2**20)

    # 2. the student's forward order (first calls), its calls per forward, its drift before
    order: list[str] = []
    seen: set[str] = set()
    made: dict[str, int] = {name: 0 for name in candidates}

    def first_call(name: str) -> Callable:
        def hook(*_args: object) -> None:
            made[name] += 1
            if name not in seen:
                seen.add(name)
                order.append(name)
        return hook

    hooks = [student_layers[name].register_forward_hook(first_call(name))
             for name in candidates]
    try:
        mse_before = _drift(student_adapter, batches, reference)
    finally:
        for handle in hooks:
            handle.remove()
    for name in candidates:
        if name not in seen:
            repairs[name] = LayerRepair(name, "skipped", "not called in the student's forward")

    def report(mse_after: float, reverted: bool = False) -> ReconstructionReport:
        layers = [repairs[name] for name in order]
        layers += [repairs[name] for name in student_layers if name not in seen]
        return ReconstructionReport(
            seconds=time.perf_counter() - start, images=int(calibration.shape[0]),
            size=(int(calibration.shape[-2]), int(calibration.shape[-1])),
            positions=positions, ridge=ridge, layers=layers, mse_before=mse_before,
            mse_after=mse_after, reverted=reverted)

    if mse_before == 0.0:  # the student computes what its reference does: nothing to repair
        log.info("reconstruction: the student's output equals its reference's on the "
                 "calibration images; nothing to repair")
        for name in order:
            repairs[name] = LayerRepair(name, "kept", "the student already matches")
        return report(mse_before)
    saved = {key: value.detach().clone() for key, value in student.state_dict().items()}

    # 3. each layer in forward order, on the inputs of the already repaired student
    if progress is not None:
        progress.start("reconstruction", len(order), "layers")
    for done, name in enumerate(order, 1):
        repairs[name] = _repair(name, student_layers[name], student_adapter, batches,
                                targets[name], ridge, made[name] // len(batches),
                                toward_current)
        if progress is not None:
            progress.update(done, layer=name)
    if progress is not None:
        progress.finish()

    mse_after = _drift(student_adapter, batches, reference)
    reverted = mse_after > mse_before
    if reverted:
        log.warning("reconstruction: the repaired student drifts more from the teacher "
                    "(MSE %.3g, before %.3g); its weights are restored", mse_after, mse_before)
        student.load_state_dict(saved)
        mse_after = mse_before
    return report(mse_after, reverted)


def _repair(name: str, module: nn.Module, adapter: nn.Module, batches: list[torch.Tensor],
            targets: list[list[_Target]], ridge: float, student_calls: int,
            toward_current: bool = False) -> LayerRepair:
    """Gather one layer's normal equations over the calibration batches (the student's
    ``student_calls`` calls per forward paired with the teacher's from the last back) and
    apply the best of the ridge solve and the bias compensation when it lowers the layer's
    error."""
    normal = _Normal()
    paired = 0
    for batch, calls in zip(batches, targets):
        counter = [0]
        problem: list[str] = []
        offset = len(calls) - student_calls  # student call c <-> teacher call c + offset
        matched = [0]

        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...],
                 output: torch.Tensor) -> None:
            call = counter[0]
            counter[0] += 1
            if not 0 <= call + offset < len(calls):  # no teacher call to pair with
                return
            target = calls[call + offset]
            try:
                x = _input_rows(module, inputs[0].detach(), output, target)
            except _Mismatch as exc:
                problem.append(f"call {call + 1}: {exc}")
                raise _Stop from None
            if module.bias is not None:
                x = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype,
                                             device=x.device)], 1)
            normal.add(x, target.values)
            matched[0] += 1
            if counter[0] == student_calls:  # its last call seen: the rest is not needed
                raise _Stop

        handle = module.register_forward_hook(hook)
        try:
            _forward(adapter, batch)
        finally:
            handle.remove()
        if problem:
            return LayerRepair(name, "skipped", f"the student's {problem[0]}")
        paired = max(paired, matched[0])
    if normal.rows == 0:
        return LayerRepair(name, "skipped", "no call paired with the teacher's")
    current = _weights(module)
    before = normal.error(current)
    solved, compensated = _solve(normal, module, ridge, toward_current)
    options = [("solved", solved)] + ([("bias", compensated)] if compensated is not None
                                      else [])
    status, best = min(options, key=lambda option: normal.error(option[1]))
    after = normal.error(best)
    if not after < before:
        return LayerRepair(name, "kept", "the solve does not lower the layer's error", paired,
                           normal.rows, before, before)
    _assign(module, best)
    log.debug("reconstruction: %s %s, relative error %.4g -> %.4g", name, status, before,
              after)
    return LayerRepair(name, status, "", paired, normal.rows, before, after)


def stage_matched_teacher(teacher: LoadedModel, student: nn.Module) -> nn.Module:
    """The teacher's network run for as many repeated stages as ``student`` runs.

    For the model's repeat keys (``ModelInfo.depth_repeats``: PReNet's ``stages``) that the
    student lowered, a copy of ``teacher.network`` with the student's counts (weights are
    shared across stages, so the copy is the teacher truncated); ``teacher.network`` itself
    when none is lowered. Removed blocks stay in it: the layers after a removed block are
    asked to make up for it.
    """
    lowered = {key: getattr(student, key) for key in teacher.info.depth_repeats
               if isinstance(getattr(student, key, None), int)
               and getattr(student, key) < getattr(teacher.network, key)}
    if not lowered:
        return teacher.network
    reference = copy.deepcopy(teacher.network)
    for key, count in lowered.items():
        setattr(reference, key, count)
    log.info("reconstruction: against the teacher run with %s, as the student",
             ", ".join(f"{key} = {count}" for key, count in lowered.items()))
    return reference


def reconstruct_student(teacher: LoadedModel, student: LoadedModel,
                        calibration: torch.Tensor | None = None,
                        count: int = DEFAULT_RECONSTRUCT_COUNT,
                        size: int = DEFAULT_RECONSTRUCT_SIZE, seed: int = 0,
                        ridge: float = DEFAULT_RECONSTRUCT_RIDGE, positions: int = POSITIONS,
                        progress: ProgressSink | None = None,
                        prior: Literal["current", "zero"] = "current"
                        ) -> ReconstructionReport:
    """Repair a pruned student in place by layer-wise ridge least squares against its
    teacher (:func:`reconstruct`), on degraded calibration images; a masked student keeps
    its masks (each output channel solved over its kept weights). A student that runs fewer
    repeated stages is fitted to the teacher run for as many
    (:func:`stage_matched_teacher`), and its drift is reported against that network.

    Args:
        teacher: the teacher the student was pruned from (not modified).
        student: an ``unstructured`` (masked), ``channel``, ``depth`` or ``depth+channel``
            student of ``teacher`` (its kept-channel map:
            :func:`~dreamprune_cli.prune.channel_map.teacher_channels`).
        calibration: ``(N, 3, H, W)`` RGB images in [0, 1]; ``None`` draws ``count``
            synthetic degraded images of the teacher's task of side ``size``, seeded by
            ``seed`` (no real image is needed).
        ridge, positions: see :func:`reconstruct`.
        progress: receives one step per layer.
        prior: what the ridge pulls each dense layer towards: ``"current"`` (default: its
            weights as pruned, the teacher's kept slice) or ``"zero"`` (the plain ridge, the
            default for structured students before this version). Masked layers always pull
            towards their current weights.

    Returns:
        The report (``as_dict()`` for JSON, ``describe()`` for one log line).

    Raises:
        UsageError: a channel-pruned student whose file predates the kept-channel map.
        ValueError: the teacher's and the student's parameters on different devices.
    """
    kept = teacher_channels(student)
    if calibration is None:
        log.info("reconstruction: %d synthetic %s images of %d px", count, teacher.info.task,
                 size)
        calibration = synthetic_calibration(teacher.info.task, count, size, seed)
    devices = {p.device for p in (*teacher.network.parameters(), *student.network.parameters())}
    if len(devices) > 1:
        raise ValueError(f"the teacher and the student must be on one device, not "
                         f"{', '.join(sorted(map(str, devices)))}")
    if devices:
        calibration = calibration.to(devices.pop())
    reference = stage_matched_teacher(teacher, student.network)
    return reconstruct(reference.eval(), student.network.eval(), calibration, kept,
                       wrap=lambda network: RestorationAdapter(network, teacher.info),
                       ridge=ridge, positions=positions, seed=seed, progress=progress,
                       toward_current=prior == "current")
