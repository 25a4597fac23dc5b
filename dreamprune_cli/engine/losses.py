"""The three losses of the method (METHOD.md): dreaming, diversity, distillation; and two
optional image terms for the dreams (a total-variation prior and a coarse-distance reward)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

Representation = Literal["gram", "gap"]


def dream_loss(restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``L_dream = || T(x) - y ||_1`` (mean absolute error)."""
    return F.l1_loss(restored, clean)


def distill_loss(student_out: torch.Tensor, teacher_out: torch.Tensor) -> torch.Tensor:
    """``L_KD = || S(x) - T(x) ||_1`` with the teacher's output as a fixed target."""
    return F.l1_loss(student_out, teacher_out.detach())


def degradation_representation(features: torch.Tensor,
                               representation: Representation = "gram") -> torch.Tensor:
    """Per-sample representation ``r_i`` of features ``(B, C, H, W)`` -> ``(B, D)``.

    ``gram``: the flattened channel Gram matrix ``F_i F_i^T / (H W)`` (ignores where things
    are, i.e. content); ``gap``: global-average-pooled features ``(B, C)``.
    """
    if features.dim() != 4:
        raise ValueError(f"expected features (B, C, H, W), got {tuple(features.shape)}")
    batch, channels = features.shape[:2]
    flat = features.float().reshape(batch, channels, -1)
    if representation == "gram":
        gram = torch.bmm(flat, flat.transpose(1, 2)) / flat.shape[-1]
        return gram.reshape(batch, -1)
    if representation == "gap":
        return flat.mean(dim=-1)
    raise ValueError(f"representation must be 'gram' or 'gap', got {representation!r}")


def cosine_matrix(representations: torch.Tensor, center: bool) -> torch.Tensor:
    """Pairwise cosine similarities ``(B, B)``, optionally after subtracting the batch mean."""
    r = representations
    if center:
        r = r - r.mean(dim=0, keepdim=True)
    r = F.normalize(r, dim=1, eps=1e-12)
    return r @ r.t()


def orth_loss(features: torch.Tensor, representation: Representation = "gram",
              gather: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``L_orth = mean_{i != j} (r_i . r_j)^2`` over centred, L2-normalised representations.

    Zero for a batch of one (nothing to push apart). ``gather``: maps this process's
    representations ``(B, D)`` to the whole batch's over several processes
    (:meth:`~dreamprune_cli.engine.distributed.RankSync.gather_rows`).
    """
    representations = degradation_representation(features, representation)
    if gather is not None:
        representations = gather(representations)
    batch = representations.shape[0]
    if batch < 2:
        return features.new_zeros(())
    cosine = cosine_matrix(representations, center=True)
    off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=cosine.device)
    return cosine[off_diagonal].pow(2).mean()


def mean_pairwise_cosine(representations: torch.Tensor) -> float:
    """Diversity figure: mean cosine similarity of uncentred representations ``(B, D)``, i != j.

    1.0 means every sample has the same degradation representation; lower is more diverse.
    """
    batch = representations.shape[0]
    if batch < 2:
        return float("nan")
    cosine = cosine_matrix(representations.float(), center=False)
    off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=cosine.device)
    return float(cosine[off_diagonal].mean())


def tv_loss(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation ``mean |x[h+1] - x[h]| + mean |x[w+1] - x[w]|``.

    An image prior from model inversion (DeepInversion, Yin et al. 2020): it removes the
    pixel noise a teacher ignores, which otherwise stays in the dreams.
    """
    vertical = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    horizontal = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    return vertical + horizontal


def coarse_distance(images: torch.Tensor, clean: torch.Tensor, pool: int) -> torch.Tensor:
    """``mean | avgpool_pool(x - y) |``: how far the dreams' coarse content is from the targets.

    Subtracted from the dreaming objective (weight ``lambda_far``), it rewards dreams that are
    strongly degraded at low frequencies yet still restored to ``y`` by the teacher.
    """
    pool = max(1, min(pool, images.shape[-2], images.shape[-1]))
    return F.avg_pool2d(images - clean, pool).abs().mean()
