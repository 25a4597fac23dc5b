"""Train the bundled teachers: tiny FFA-Net (dehaze), HINet and MPRNet (rain streaks).

Only procedural dead-leaves scenes and dreamprune's own synthesizers are used, on the CPU,
with fixed seeds, so a rerun reproduces the shipped weights' scores (one thread, same torch
build: bit-identical; otherwise within a few hundredths of a dB).

Recipe (per teacher, see ``RECIPES``): a pool of procedural clean scenes rendered once;
each step takes random 64-pixel crops of the pool (with flips and 90-degree turns) and
degrades them afresh with randomly drawn parameters over the synthesizer's full range;
AdamW, linear warm-up then cosine decay of the learning rate, Charbonnier loss on the
restored image, gradient clipping. The script then scores the teacher next to the
degraded input on held-out synthetic sets (other seeds) and, when scikit-image is
installed, on its bundled photographs degraded the same way, and writes the weights to
``dreamprune_cli/assets/teachers/<model>.safetensors`` and the numbers to
``bench/results/teachers/<model>.json``.

Usage::

    python bench/train_teachers.py ffa          # one teacher (about 20 minutes, 1 thread)
    python bench/train_teachers.py ffa --evaluate-only   # re-score the shipped weights
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from dreamprune_cli.data.clean import ProceduralSource
from dreamprune_cli.data.images import read_image
from dreamprune_cli.data.pairs import ImagePair, pair_folders
from dreamprune_cli.data.synthetic import (TEST_SET_COUNT, TEST_SET_SEED, TEST_SET_SIZE,
                                           degrade_batch, image_generator, write_synthetic_set)
from dreamprune_cli.engine.evaluate import evaluate_pairs
from dreamprune_cli.flops import count_costs
from dreamprune_cli.models.checkpoint import save_safetensors
from dreamprune_cli.models.loading import load_model
from dreamprune_cli.models.registry import get_model_info, model_config

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "dreamprune_cli" / "assets" / "teachers"
RESULTS = ROOT / "bench" / "results" / "teachers"
HELD_OUT_SEED = 777
HELD_OUT_COUNT = 48
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")

log = logging.getLogger("train_teachers")


@dataclass(frozen=True)
class Recipe:
    """Everything that fixes a teacher's training."""

    task: str
    steps: int
    batch: int = 12
    crop: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 1e-4
    warmup: int = 100
    clip: float = 1.0
    pool: int = 1536         # procedural clean scenes rendered once
    pool_size: int = 96      # their side; crops are taken from them
    seed: int = 0


RECIPES: dict[str, Recipe] = {
    "ffa": Recipe(task="dehaze", steps=4000, lr=2e-3, seed=11),
    "hinet": Recipe(task="derain", steps=2000, seed=12),
    "mprnet": Recipe(task="derain", steps=2000, seed=13),
}


def charbonnier(output: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean of ``sqrt((x - y)^2 + eps^2)`` (a smooth L1)."""
    return torch.sqrt((output - target) ** 2 + eps * eps).mean()


def render_pool(recipe: Recipe) -> torch.Tensor:
    """The clean scenes crops are drawn from, ``(pool, 3, pool_size, pool_size)``."""
    generator = torch.Generator().manual_seed(recipe.seed)
    source = ProceduralSource()
    chunks = [source.sample(min(32, recipe.pool - i), recipe.pool_size, generator)
              for i in range(0, recipe.pool, 32)]
    return torch.cat(chunks)


def training_batch(pool: torch.Tensor, recipe: Recipe, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops of the pool (flipped and turned), degraded afresh: (degraded, clean)."""
    index = torch.randint(0, pool.shape[0], (recipe.batch,), generator=generator)
    limit = pool.shape[-1] - recipe.crop + 1
    crops = []
    for i in index.tolist():
        top, left = torch.randint(0, limit, (2,), generator=generator).tolist()
        crop = pool[i, :, top:top + recipe.crop, left:left + recipe.crop]
        turns, flip = torch.randint(0, 4, (1,), generator=generator).item(), \
            torch.randint(0, 2, (1,), generator=generator).item()
        crop = torch.rot90(crop, int(turns), dims=(1, 2))
        crops.append(crop.flip(-1) if flip else crop)
    clean = torch.stack(crops).contiguous()
    degraded, _ = degrade_batch(recipe.task, clean, generator)
    return degraded, clean


def learning_rate(step: int, recipe: Recipe) -> float:
    """Linear warm-up, then cosine decay from ``lr`` to ``min_lr``."""
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return recipe.min_lr + 0.5 * (recipe.lr - recipe.min_lr) * (1 + math.cos(math.pi * progress))


def train(name: str, recipe: Recipe) -> tuple[torch.nn.Module, dict[str, float]]:
    """Train the tiny variant of ``name``; returns the network and timing facts."""
    torch.manual_seed(recipe.seed)  # the network's initialisation
    loaded = load_model(name, "tiny", use_bundled=False)
    adapter = loaded.adapter().train()
    start = time.perf_counter()
    pool = render_pool(recipe)
    pool_seconds = time.perf_counter() - start
    log.info("%s: rendered %d clean scenes in %.1f s", name, recipe.pool, pool_seconds)
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=recipe.lr,
                                  weight_decay=recipe.weight_decay)
    generator = torch.Generator().manual_seed(recipe.seed + 1000)
    running = 0.0
    for step in range(recipe.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, recipe)
        degraded, clean = training_batch(pool, recipe, generator)
        loss = charbonnier(adapter(degraded), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(adapter.parameters(), recipe.clip)
        optimizer.step()
        value = loss.item()
        running = 0.98 * running + 0.02 * value if step else value
        if (step + 1) % 50 == 0 or step == 0:
            elapsed = time.perf_counter() - start
            log.info("%s step %d/%d loss %.4f lr %.2e %.0f s (%.2f s/step)", name, step + 1,
                     recipe.steps, running, group["lr"], elapsed,
                     (elapsed - pool_seconds) / (step + 1))
    adapter.eval()
    return adapter.network, {"train_seconds": time.perf_counter() - start,
                             "pool_seconds": pool_seconds}


def identity_pairs(pairs: list[ImagePair], space: str) -> dict[str, float]:
    """Mean PSNR/SSIM of the degraded inputs themselves (the 'do nothing' baseline)."""
    from dreamprune_cli.metrics import psnr, ssim

    values = [(float(psnr(read_image(p.input_path), read_image(p.target_path), space)),
               float(ssim(read_image(p.input_path), read_image(p.target_path), space)))
              for p in pairs]
    return {"psnr": sum(v[0] for v in values) / len(values),
            "ssim": sum(v[1] for v in values) / len(values)}


def photo_pairs(task: str, folder: Path) -> list[ImagePair] | None:
    """scikit-image's bundled photographs (256 x 256 centre crops) degraded by ``task``."""
    try:
        import skimage
    except ImportError:
        return None
    data = Path(skimage.__file__).parent / "data"
    for index, filename in enumerate(PHOTOS):
        image = read_image(data / filename).unsqueeze(0)
        short = min(image.shape[-2:])
        image = F.interpolate(image, scale_factor=256 / short, mode="bicubic",
                              antialias=True, align_corners=False).clamp(0, 1)
        top, left = (image.shape[-2] - 256) // 2, (image.shape[-1] - 256) // 2
        clean = image[..., top:top + 256, left:left + 256]
        degraded, _ = degrade_batch(task, clean, image_generator(HELD_OUT_SEED + 1, index))
        stem = Path(filename).stem
        from dreamprune_cli.data.images import write_png

        write_png(folder / "target" / f"{stem}.png", clean[0], overwrite=True)
        write_png(folder / "input" / f"{stem}.png", degraded[0], overwrite=True)
    return pair_folders(folder / "input", folder / "target")


def score(network: torch.nn.Module, name: str, task: str) -> dict[str, dict[str, float]]:
    """Teacher and degraded-input PSNR/SSIM on the held-out sets."""
    info = get_model_info(name)
    from dreamprune_cli.models.adapter import RestorationAdapter

    adapter = RestorationAdapter(network, info).eval()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sets = {
            f"default ({TEST_SET_COUNT} x {TEST_SET_SIZE} px, seed {TEST_SET_SEED})":
                (TEST_SET_COUNT, TEST_SET_SIZE, TEST_SET_SEED),
            f"held-out ({HELD_OUT_COUNT} x 128 px, seed {HELD_OUT_SEED})":
                (HELD_OUT_COUNT, 128, HELD_OUT_SEED),
        }
        for label, (count, size, seed) in sets.items():
            folder = Path(tmp) / f"set{seed}"
            write_synthetic_set(task, count, size, seed, folder)
            pairs = pair_folders(folder / "input", folder / "target")
            results[label] = _score_pairs(adapter, pairs, info.metric_space)
        photos = photo_pairs(task, Path(tmp) / "photos")
        if photos is not None:
            results["scikit-image photos (5 x 256 px)"] = _score_pairs(adapter, photos,
                                                                      info.metric_space)
    return results


def _score_pairs(adapter: torch.nn.Module, pairs: list[ImagePair], space: str
                 ) -> dict[str, float]:
    result = evaluate_pairs(adapter, pairs, space, 0, torch.device("cpu"))
    base = identity_pairs(pairs, space)
    return {"psnr": result.psnr, "ssim": result.ssim, "input_psnr": base["psnr"],
            "input_ssim": base["ssim"], "gain_db": result.psnr - base["psnr"],
            "count": result.count, "metric_space": space}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(RECIPES))
    parser.add_argument("--evaluate-only", action="store_true",
                        help="score the shipped weights instead of training")
    parser.add_argument("--out", type=Path, default=None,
                        help="weights file (default: the package's assets)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None,
                        help="override the recipe's steps (smoke tests; not the shipped recipe)")
    parser.add_argument("--pool", type=int, default=None,
                        help="override the recipe's pool size (smoke tests)")
    parser.add_argument("--lr", type=float, default=None,
                        help="override the recipe's peak learning rate (experiments)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    name, recipe = args.model, RECIPES[args.model]
    if args.steps is not None:
        recipe = replace(recipe, steps=args.steps, warmup=min(recipe.warmup, args.steps))
    if args.pool is not None:
        recipe = replace(recipe, pool=args.pool)
    if args.lr is not None:
        recipe = replace(recipe, lr=args.lr)
    out = args.out or ASSETS / f"{name}.safetensors"
    config = model_config(name, "tiny")
    if args.evaluate_only:
        network = load_model(None, weights=out).network
        timing: dict[str, float] = {}
    else:
        network, timing = train(name, recipe)
        save_safetensors(out, network.state_dict(), name, config, overwrite=True,
                         extra={"dreamprune.teacher": json.dumps(asdict(recipe))})
        log.info("%s: wrote %s", name, out)
    info = get_model_info(name)
    from dreamprune_cli.models.adapter import RestorationAdapter

    cost = count_costs(RestorationAdapter(network, info), (3, 256, 256))
    results = score(network, name, recipe.task)
    record = {"model": name, "variant": "tiny", "config": config, "recipe": asdict(recipe),
              "params": cost.params, "macs_256": cost.macs, **timing,
              "torch": torch.__version__, "python": platform.python_version(),
              "threads": args.threads, "results": results}
    for label, values in results.items():
        log.info("%s %s: %.2f dB / %.4f (input %.2f dB / %.4f, gain %+.2f dB)", name, label,
                 values["psnr"], values["ssim"], values["input_psnr"], values["input_ssim"],
                 values["gain_db"])
    if not args.evaluate_only and recipe == RECIPES[name] and args.out is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    else:
        print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
