"""Choosing which blocks, branches and repeats to remove: lazy greedy by drift per MAC saved.

A *state* is a set of removed modules and a count per repeat key. Its *drift* is the mean
squared difference between its network's output and the teacher's on calibration images
(RGB [0, 1], through the model's adapter); its MACs are counted by the project's counter at
the MAC-counting size. From the teacher, each step removes the cut whose drift increase per
MAC saved is smallest, until the target is reached. Scores are re-measured lazily (Minoux's
accelerated greedy): the best stale score is re-measured in the current state and taken only
if it is still the best, so interactions between cuts are measured where they matter
without re-measuring every candidate at every step.
"""

from __future__ import annotations

import copy
import heapq
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from dreamprune_cli.flops import count_costs
from dreamprune_cli.models.depth import remove_modules
from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.prune.depth.candidates import DepthSpace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DepthState:
    """Removed modules (``{name: "block" | "branch"}``) and repeat counts (``{key: n}``)."""

    removed: tuple[tuple[str, str], ...] = ()
    repeats: tuple[tuple[str, int], ...] = ()

    def with_cut(self, cut: "Cut") -> "DepthState":
        if cut.kind == "repeat":
            counts = dict(self.repeats)
            counts[cut.name] -= 1
            return DepthState(self.removed, tuple(sorted(counts.items())))
        inside = cut.name + "."  # a removed block's own removed parts are moot
        kept = [(n, k) for n, k in self.removed if not n.startswith(inside)]
        return DepthState(tuple(sorted((*kept, (cut.name, cut.kind)))), self.repeats)

    def apply(self, teacher: nn.Module) -> nn.Module:
        """A copy of ``teacher`` with this state's removals and repeat counts."""
        network = copy.deepcopy(teacher)
        remove_modules(network, dict(self.removed))
        for key, count in self.repeats:
            setattr(network, key, count)
        return network

    def label(self, teacher_repeats: dict[str, int]) -> str:
        parts = [name for name, _ in self.removed]
        parts += [f"{key} {teacher_repeats[key]}->{count}" for key, count in self.repeats
                  if count != teacher_repeats[key]]
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class Cut:
    """One removal: a block, a branch, or one step less of a repeat key."""

    kind: str  # "block" | "branch" | "repeat"
    name: str


@dataclass
class DepthStep:
    """A state on the greedy path with its measured cost and drift."""

    state: DepthState
    label: str
    cut: str
    macs: int
    macs_ratio: float
    mse: float

    @property
    def fidelity_db(self) -> float:
        """PSNR of the state's output against the teacher's (dB; inf when identical)."""
        return math.inf if self.mse <= 0 else 10 * math.log10(1.0 / self.mse)

    def as_dict(self) -> dict[str, object]:
        return {"cut": self.cut, "removed": self.label, "macs_ratio": self.macs_ratio,
                "mse": self.mse, "fidelity_db": self.fidelity_db}


@dataclass
class DepthSearch:
    """Measures states of one teacher on fixed calibration images."""

    teacher: nn.Module
    wrap: Callable[[nn.Module], nn.Module]  # bare network -> RGB [0, 1] adapter
    calibration: torch.Tensor  # (B, 3, H, W) in [0, 1]
    input_size: tuple[int, int, int]  # what the bare network receives at the MAC size
    max_batch: int = 8
    measured: int = 0
    _reference: list[torch.Tensor] = field(default_factory=list)
    _cache: dict[DepthState, tuple[int, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        costs = count_costs(self.teacher, self.input_size)
        self.macs_dense, self.macs_teacher = costs.macs_dense, costs.macs
        self._reference = self._outputs(self.teacher)

    def _outputs(self, network: nn.Module) -> list[torch.Tensor]:
        adapter = self.wrap(network).eval()
        with torch.no_grad():
            return [adapter(batch).float()
                    for batch in self.calibration.split(self.max_batch)]

    def drift_of(self, network: nn.Module) -> float:
        """Mean squared difference of ``network``'s outputs to the teacher's."""
        outputs = self._outputs(network)
        squared = sum(float(((o - r) ** 2).sum()) for o, r in zip(outputs, self._reference))
        return squared / sum(r.numel() for r in self._reference)

    def measure(self, state: DepthState) -> tuple[int, float]:
        """``(MACs, drift MSE)`` of ``state``'s network (each state measured once)."""
        if state in self._cache:
            return self._cache[state]
        network = state.apply(self.teacher)
        macs = count_costs(network, self.input_size).macs
        self.measured += 1
        self._cache[state] = (macs, self.drift_of(network))
        return self._cache[state]


def greedy_path(search: DepthSearch, space: DepthSpace, target: float,
                progress: ProgressSink | None = None) -> list[DepthStep]:
    """The greedy removal path from the teacher down to ``target`` of the dense MACs.

    Returns every state on the way (the teacher first); the last one is the first at or
    below ``target`` or, when the candidates run out first, the smallest reachable.
    """
    cuts = _cuts(space)
    state = DepthState(repeats=tuple(sorted(space.repeats.items())))
    path = [DepthStep(state, "none", "-", search.macs_teacher,
                      search.macs_teacher / search.macs_dense, 0.0)]
    # heap of (stale score, tie-break, cut); scores measured from the current state
    heap: list[tuple[float, int, Cut]] = [(-math.inf, i, cut) for i, cut in enumerate(cuts)]
    heapq.heapify(heap)
    fresh: set[Cut] = set()
    if progress is not None:
        progress.start("depth search", None, "states")
    while heap and path[-1].macs_ratio > target:
        current = path[-1]
        score, tie, cut = heapq.heappop(heap)
        if not _available(cut, current.state):
            continue
        if cut not in fresh:  # re-measure in the current state, then compete again
            macs, mse = search.measure(current.state.with_cut(cut))
            saved = current.macs - macs
            score = (mse - current.mse) / saved if saved > 0 else math.inf
            fresh.add(cut)
            heapq.heappush(heap, (score, tie, cut))
            if progress is not None:
                progress.update(search.measured, macs=current.macs_ratio)
            continue
        if math.isinf(score):
            continue
        nxt = current.state.with_cut(cut)
        path.append(_step(search, space, nxt, cut))
        log.info("depth: removed %s: %.4f of the MACs, %.2f dB to the teacher's output",
                 path[-1].cut, path[-1].macs_ratio, path[-1].fidelity_db)
        fresh.clear()  # every other score is stale now
        if cut.kind == "repeat" and _available(cut, nxt):
            heapq.heappush(heap, (score, tie, cut))
    if progress is not None:
        progress.finish()
    return path


def finishing_steps(search: DepthSearch, space: DepthSpace,
                    path: list[DepthStep]) -> list[DepthStep]:
    """States one cut away from the last state above the target, measured.

    The greedy step that crosses the target takes the cut of least drift per MAC, which may
    land far below it (a PReNet stage is 1/6 of its MACs); these alternatives (any one cut,
    a residual block say) let the plan land closer. Empty when the path never crossed.
    """
    above = path[-2] if len(path) > 1 else None
    if above is None:
        return []
    steps = []
    for cut in _cuts(space):
        if not _available(cut, above.state):
            continue
        state = above.state.with_cut(cut)
        if state != path[-1].state:
            steps.append(_step(search, space, state, cut))
    return steps


def _cuts(space: DepthSpace) -> list[Cut]:
    """Every cut of ``space``: its blocks, its branches, one step less of each repeat."""
    cuts = [Cut("block", n) for n in space.blocks] + [Cut("branch", n) for n in space.branches]
    return cuts + [Cut("repeat", key) for key, count in space.repeats.items() if count > 1]


def _step(search: DepthSearch, space: DepthSpace, state: DepthState, cut: Cut) -> DepthStep:
    """``state`` (reached by ``cut``) measured: its MACs and drift."""
    macs, mse = search.measure(state)
    return DepthStep(state, state.label(dict(space.repeats)),
                     cut.name if cut.kind != "repeat" else f"{cut.name} -1", macs,
                     macs / search.macs_dense, mse)


def _available(cut: Cut, state: DepthState) -> bool:
    """Whether ``cut`` can still be made: a repeat above 1, or a module not yet removed and
    not inside a removed one."""
    if cut.kind == "repeat":
        return dict(state.repeats)[cut.name] > 1
    return not any(cut.name == name or cut.name.startswith(name + ".")
                   for name, _ in state.removed)
