"""Feature distillation: the student's intermediate outputs matched to the teacher's at the
channels it kept (``--lambda-feat``).

With ``lambda_feat > 0`` the student's loss per step is

    L = lambda_kd * mean |S(x) - T(x)|  +  lambda_feat * L_feat

    L_feat = mean over layers l of ( mean over paired calls k of
                                     mean |S_l^k(x) - T_l^k(x)[:, out_idx_l]| )

where ``S_l^k`` is the output of the ``k``-th call of student layer ``l`` in one forward,
``T_l^k`` the teacher's layer of the same name, and ``out_idx_l`` the teacher output channels
the student layer kept (:func:`~dreamprune_cli.prune.channel_map.teacher_channels`; the
identity for masked and depth-pruned students). This is the "hint" loss of FitNets (Romero
et al., ICLR 2015) at every layer both networks have, with no regressor: a structured
student's layer *is* a subset of the teacher's channels, so the hint is read off those
channels directly. The distance is the mean absolute difference (L1), like the output term,
rather than FitNets' squared error: it keeps the two terms on one scale and is less dominated
by the few large activations of restoration networks (the attention-transfer / FSP family,
Zagoruyko and Komodakis 2017, Yim et al. 2017, match statistics of the same maps instead).

Which layers: every convolution and linear layer that the student and the teacher both hold
under the same name and that the map covers (optionally restricted by ``feat_layers`` globs),
except modules held under several names (their calls cannot be told apart). Calls are paired
in order *from the last*: the student's last call with the teacher's last, and so on back; a
student that calls a layer fewer times (a depth student with ``n`` of the teacher's ``m``
recurrent stages) is paired with the teacher's last ``n`` calls, so that its last stage is
asked for the teacher's last stage's features, as its output is for the teacher's output.
(Pairing the first calls instead asks the shortened student's last stage for the teacher's
``n``-th stage, against the output term: on PReNet6 cut to 4 stages, 200 steps with
``lambda_feat`` 1 so paired ended 1.8 dB further from the teacher on the synthetic validation
than without the term; ``bench/recovery.py``.) A layer the student no longer has (a removed
block) or never calls contributes nothing. The
mean runs over the layers with at least one paired call, each layer weighted equally
whatever its number of calls; the difference is computed in float32 (under AMP too).

Cost: the teacher's features come from the forward that already produces its outputs
(:meth:`FeatureDistillation.teacher_tap` hooks that forward, detached, keeping only the kept
output channels and, once the student's call counts are known, only as many calls as it
makes, the last ones); the student's from its own training forward. Nothing is hooked when the term is off.
"""

from __future__ import annotations

import fnmatch
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
from torch import nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.channel_map import LayerChannels, layer_widths, mapped_layers

log = logging.getLogger(__name__)

__all__ = ["FeatureCalls", "FeatureDistillation", "FeatureLayer", "FeatureSettings",
           "FeatureTap", "check_feature_patterns", "feature_layers", "feature_loss",
           "layer_matches"]

FeatureCalls = dict[str, list[torch.Tensor]]
"""Layer name -> its outputs, one per call in the order of the forward."""


@dataclass(frozen=True)
class FeatureSettings:
    """The feature term's settings: ``lambda_feat`` (its weight, 0: off, the method) and
    ``feat_layers`` (module-name globs restricting the matched layers; empty: all).

    Raises:
        UsageError: ``lambda_feat`` negative or not finite.
    """

    lambda_feat: float = 0.0
    feat_layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lambda_feat) and self.lambda_feat >= 0):
            raise UsageError(f"$lambda_feat {self.lambda_feat}: expected 0 or more")
        object.__setattr__(self, "feat_layers", tuple(self.feat_layers))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> FeatureSettings:
        """From a mapping with ``lambda_feat`` and ``feat_layers`` (e.g. the distill
        settings' ``model_dump()``); missing keys take the defaults."""
        return cls(float(values.get("lambda_feat", 0.0)),
                   tuple(values.get("feat_layers") or ()))

    @property
    def enabled(self) -> bool:
        return self.lambda_feat > 0

    def recorded(self) -> dict[str, Any]:
        """What a joint checkpoint records (a resumed run must keep it): nothing when off
        (checkpoints without the term stay as they were), else ``lambda_feat`` and
        ``feat_layers`` (a list)."""
        if not self.enabled:
            return {}
        return {"lambda_feat": self.lambda_feat, "feat_layers": list(self.feat_layers)}


@dataclass(frozen=True)
class FeatureLayer:
    """One matched layer: the teacher's and the student's module of ``name``, the teacher
    output channels the student kept (``outputs``, long, on the CPU) and the output's channel
    dimension (1 for convolutions, -1 for linear layers)."""

    name: str
    teacher: nn.Module
    student: nn.Module
    outputs: torch.Tensor
    channel_dim: int


def layer_matches(name: str, pattern: str) -> bool:
    """Whether dotted ``name`` matches ``pattern`` part by part, as ``--exclude`` globs do
    (``body.*`` matches ``body.conv``, not ``body.0.conv``; ``*`` does not cross dots)."""
    parts, globs = name.split("."), pattern.split(".")
    return len(parts) == len(globs) and all(fnmatch.fnmatchcase(part, glob)
                                            for part, glob in zip(parts, globs))


def _single_names(network: nn.Module) -> dict[str, nn.Module]:
    """``mapped_layers(network)`` less the modules held under several names."""
    layers = mapped_layers(network)
    uses = Counter(id(module) for module in layers.values())
    return {name: module for name, module in layers.items() if uses[id(module)] == 1}


def feature_layers(teacher: nn.Module, student: nn.Module, kept: Mapping[str, LayerChannels],
                   patterns: Sequence[str] = ()) -> list[FeatureLayer]:
    """The layers the feature term matches, in the student's module order (module doc).

    Args:
        teacher: the teacher's bare network.
        student: the student's bare network (the teacher's layer names).
        kept: the student's kept-channel map (``teacher_channels(student)``).
        patterns: globs on the dotted layer names (:func:`layer_matches`); empty: every layer.

    Raises:
        UsageError: no layer qualifies, or a pattern matches none of the qualifying layers.
    """
    teacher_layers, student_layers = _single_names(teacher), _single_names(student)
    found: list[FeatureLayer] = []
    for name, module in student_layers.items():
        if name not in teacher_layers or name not in kept:
            continue
        outputs = kept[name].outputs
        width = layer_widths(teacher_layers[name])[0]
        if len(outputs) != layer_widths(module)[0] or (outputs and max(outputs) >= width):
            log.debug("feature distillation: %s skipped (the kept-channel map does not fit "
                      "its outputs)", name)
            continue
        if patterns and not any(layer_matches(name, p) for p in patterns):
            continue
        found.append(FeatureLayer(name, teacher_layers[name], module,
                                  torch.tensor(outputs, dtype=torch.long),
                                  -1 if isinstance(module, nn.Linear) else 1))
    for pattern in patterns:
        if not any(layer_matches(layer.name, pattern) for layer in found):
            raise UsageError(f"$feat_layers {pattern!r} matches no convolution or linear "
                             "layer that both the student and the teacher have")
    if not found:
        raise UsageError("$lambda_feat: the student and the teacher share no convolution or "
                         "linear layer to match (set $lambda_feat 0)")
    return found


def check_feature_patterns(teacher: nn.Module, settings: FeatureSettings) -> None:
    """Before any work: with the term on, each ``feat_layers`` glob matches a convolution or
    linear layer of the bare ``teacher`` network (a student has no layer the teacher lacks).

    Raises:
        UsageError: a glob that matches none.
    """
    if not settings.enabled:
        return
    names = list(mapped_layers(teacher))
    for pattern in settings.feat_layers:
        if not any(layer_matches(name, pattern) for name in names):
            raise UsageError(f"$feat_layers {pattern!r} matches no convolution or linear "
                             "layer of the teacher")


class FeatureTap:
    """Context manager recording the outputs of ``layers``' modules of one side.

    ``teacher=True``: the teacher's modules; each output is detached and reduced to the kept
    output channels as soon as it is produced; only the last ``limits[name]`` calls of a
    layer are kept per forward of ``root``; and each forward of ``root`` (a new evaluation of the
    teacher, e.g. the dream and the synthetic half of a mixed batch) starts a new group,
    the groups joined along the batch dimension call by call (:meth:`calls`).
    ``teacher=False``: the student's modules, outputs kept as they are (with their graph).
    """

    def __init__(self, layers: Sequence[FeatureLayer], teacher: bool,
                 root: nn.Module | None = None,
                 limits: Mapping[str, int] | None = None) -> None:
        self.layers = list(layers)
        self.teacher = teacher
        self.root = root
        self.limits = dict(limits or {})
        self._groups: list[FeatureCalls] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _start_group(self, *_args: object) -> None:
        self._groups.append({layer.name: [] for layer in self.layers})

    def _hook(self, layer: FeatureLayer) -> Any:
        def hook(_module: nn.Module, _args: object, output: torch.Tensor) -> None:
            if not self._groups:
                self._start_group()
            calls = self._groups[-1][layer.name]
            if self.teacher:
                limit = self.limits.get(layer.name)
                if limit is not None and len(calls) >= limit:
                    del calls[0]  # the last ``limit`` calls are the ones paired
                output = output.detach().index_select(
                    layer.channel_dim, layer.outputs.to(output.device))
            calls.append(output)
        return hook

    def __enter__(self) -> FeatureTap:
        self._groups = []
        if self.root is not None:
            self._handles.append(self.root.register_forward_pre_hook(self._start_group))
        for layer in self.layers:
            module = layer.teacher if self.teacher else layer.student
            self._handles.append(module.register_forward_hook(self._hook(layer)))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def calls(self) -> FeatureCalls:
        """Every layer's recorded calls; several groups are concatenated along dim 0, call
        ``k`` with call ``k`` (as many calls as the group with the fewest, its last ones)."""
        if not self._groups:
            return {layer.name: [] for layer in self.layers}
        if len(self._groups) == 1:
            return self._groups[0]
        joined: FeatureCalls = {}
        for layer in self.layers:
            per_group = [group[layer.name] for group in self._groups]
            count = min(len(calls) for calls in per_group)
            joined[layer.name] = [torch.cat([calls[len(calls) - count + k]
                                             for calls in per_group])
                                  for k in range(count)]
        return joined


def feature_loss(student: Mapping[str, Sequence[torch.Tensor]],
                 teacher: Mapping[str, Sequence[torch.Tensor]]) -> torch.Tensor:
    """``L_feat`` (module doc): per layer the mean over paired calls of the float32 mean
    absolute difference, then the mean over the layers with a paired call; a float32 scalar
    (0 when nothing pairs).

    Args:
        student: ``{layer: [output of call 1, call 2, ...]}`` of the student's forward.
        teacher: the same of the teacher's forward, already reduced to the kept channels.

    Raises:
        ValueError: a paired call whose student and teacher outputs differ in shape (a
            kept-channel map or an input that does not fit).
    """
    per_layer: list[torch.Tensor] = []
    device = None
    for name, student_calls in student.items():
        teacher_calls = teacher.get(name, ())
        count = min(len(student_calls), len(teacher_calls))
        if count == 0:
            continue
        terms = []
        for k in range(-count, 0):  # from the last call back (module doc)
            mine, theirs = student_calls[k], teacher_calls[k]
            if mine.shape != theirs.shape:
                raise ValueError(f"feature distillation: {name} call "
                                 f"{len(student_calls) + k + 1}: the student's "
                                 f"output is {tuple(mine.shape)}, the teacher's at the kept "
                                 f"channels {tuple(theirs.shape)}")
            terms.append((mine.float() - theirs.float()).abs().mean())
            device = mine.device
        per_layer.append(torch.stack(terms).mean())
    if not per_layer:
        return torch.zeros((), device=device)
    return torch.stack(per_layer).mean()


class FeatureDistillation:
    """The feature term of one teacher/student pair: its settings, layers and hooks.

    ``teacher_root``: the module whose forward is one evaluation of the teacher (its
    adapter); :meth:`teacher_tap` groups the recorded calls by its forwards.
    """

    def __init__(self, settings: FeatureSettings, layers: Sequence[FeatureLayer],
                 teacher_root: nn.Module | None = None) -> None:
        if not settings.enabled:
            raise ValueError("FeatureDistillation: lambda_feat is 0 (build none instead)")
        self.settings = settings
        self.layers = list(layers)
        self.teacher_root = teacher_root
        self.student_calls: dict[str, int] = {}
        """Calls of each layer in the student's last forward: the teacher keeps no more."""

    @classmethod
    def build(cls, settings: FeatureSettings, teacher: nn.Module, student: nn.Module,
              kept: Mapping[str, LayerChannels],
              teacher_root: nn.Module | None = None) -> FeatureDistillation | None:
        """The term for bare networks ``teacher`` and ``student`` (:func:`feature_layers`);
        ``None`` when ``lambda_feat`` is 0, so that nothing is hooked.

        Raises:
            UsageError: as :func:`feature_layers`.
        """
        if not settings.enabled:
            return None
        layers = feature_layers(teacher, student, kept, settings.feat_layers)
        log.info("feature distillation: lambda_feat %g on %d layers", settings.lambda_feat,
                 len(layers))
        return cls(settings, layers, teacher_root)

    @property
    def lambda_feat(self) -> float:
        return self.settings.lambda_feat

    def teacher_tap(self) -> FeatureTap:
        """Hooks for the teacher's forward that produces the targets of a step."""
        return FeatureTap(self.layers, teacher=True, root=self.teacher_root,
                          limits=self.student_calls)

    def student_tap(self) -> FeatureTap:
        """Hooks for the student's training forward."""
        return FeatureTap(self.layers, teacher=False)

    def loss(self, student: FeatureCalls, teacher: FeatureCalls) -> torch.Tensor:
        """:func:`feature_loss`; remembers the student's call counts (the teacher's tap then
        keeps no more calls than the student makes)."""
        self.student_calls = {name: len(calls) for name, calls in student.items()}
        return feature_loss(student, teacher)
