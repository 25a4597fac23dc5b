"""Train the bundled teachers: tiny FFA-Net (dehaze), HINet and MPRNet (rain streaks).

Clean images are procedural dead-leaves scenes plus crops of photographs that ship inside
Python packages (scikit-image, scikit-learn, matplotlib: ``pip install -e ".[bench]"``),
never a test set; degradations come from dreamprune's own synthesizers and kornia's, on the
CPU, with fixed seeds, so a rerun reproduces the shipped weights' scores (one thread, same
torch build: bit-identical; otherwise within a few hundredths of a dB).

Recipe (per teacher, see ``RECIPES``): a pool of clean crops built once (procedural scenes
and photo crops at random scales); each step takes random 64-pixel crops of the pool (with
flips and 90-degree turns) and degrades each afresh by one renderer of the task's mixture
(``MIXTURES``) with randomly drawn parameters; AdamW, linear warm-up then cosine decay of the
learning rate, Charbonnier loss on the restored image, gradient clipping. The script then
scores the teacher next to the degraded input on held-out synthetic sets (other seeds: the
default synthesizer's and the training mixture's), on scikit-image's five bundled colour
photographs degraded the same way (never trained on), and, when ``../shared/realdata``
exists, on the real test sets (Rain100L, SOTS indoor: scored once, never used to choose),
and writes the weights to ``dreamprune_cli/assets/teachers/<model>.safetensors`` and the
numbers to ``bench/results/teachers/<model>.json``.

Usage::

    python bench/train_teachers.py ffa          # one teacher (about 20 minutes, 1 thread)
    python bench/train_teachers.py ffa --evaluate-only   # re-score the shipped weights
    python bench/train_teachers.py ffa --no-real   # train, scoring synthetic sets only
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from dreamprune_cli.data.clean import ProceduralSource
from dreamprune_cli.data.degrade import Params, haze, kornia_rain, rain_streaks, scene_depth
from dreamprune_cli.data.images import read_image, write_png
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
# Photographs shipped inside packages that training may crop: (package, file). Never the five
# evaluation photos above, nor motorcycle_right (the stereo twin of one of them).
TRAINING_PHOTOS = (
    ("skimage", "data/brick.png"), ("skimage", "data/camera.png"), ("skimage", "data/coins.png"),
    ("skimage", "data/grass.png"), ("skimage", "data/gravel.png"),
    ("skimage", "data/hubble_deep_field.jpg"), ("skimage", "data/ihc.png"),
    ("skimage", "data/moon.png"), ("skimage", "data/retina.jpg"),
    ("sklearn", "datasets/images/china.jpg"), ("sklearn", "datasets/images/flower.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)
REALDATA = (ROOT / ".." / "shared" / "realdata").resolve()
REAL_SETS = {  # task -> (label, degraded folder, clean folder); test data, scored only
    "derain": ("Rain100L test (100 pairs, real benchmark)",
               REALDATA / "KaneWANG0816+RGR/rain100L/test/small/rain",
               REALDATA / "KaneWANG0816+RGR/rain100L/test/small/norain"),
    "dehaze": ("SOTS indoor (50 shared pairs, real benchmark)",
               REALDATA / "square-moon+haze/data/RESIDE-IN/test/hazy",
               REALDATA / "square-moon+haze/data/RESIDE-IN/test/GT"),
}
MIXTURE_SEED = 779
MIXTURE_COUNT = 48

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
    photo_crops: int = 0     # crops of TRAINING_PHOTOS added to the pool
    mixture: str = "plain"   # the degradation mixture (MIXTURES): "plain" or "varied"
    seed: int = 0


RECIPES: dict[str, Recipe] = {
    "ffa": Recipe(task="dehaze", steps=5000, lr=2e-3, mixture="varied",
                  seed=11),
    "hinet": Recipe(task="derain", steps=3000, photo_crops=1024, mixture="varied", seed=12),
    "mprnet": Recipe(task="derain", steps=3000, photo_crops=1024, mixture="varied", seed=13),
}


def light_rain(clean: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, Params]:
    """Light rain with no veil: one layer of thin, sparse streaks (what Rain100L-like photos
    show, and what the full-range synthesizer rarely draws)."""
    n = clean.shape[0]
    u = torch.rand((n,), generator=generator)
    density = torch.exp(math.log(5e-4) + u * (math.log(8e-3) - math.log(5e-4)))
    return rain_streaks(clean, generator, layers=1, veil=0.0, density=density,
                        width=0.5 + torch.rand((n,), generator=generator),
                        brightness=0.15 + 0.45 * torch.rand((n,), generator=generator),
                        length=10.0 + 50.0 * torch.rand((n,), generator=generator))


def scene_haze(clean: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, Params]:
    """Haze over a depth whose steps follow the scene's objects (``scene_depth``)."""
    depth, _ = scene_depth(clean, generator)
    return haze(clean, generator, depth=depth)


# task -> mixture name -> [(renderer, probability)]: each training crop is degraded by one
# renderer drawn with these probabilities. ``rain_streaks`` and ``haze`` called with only a
# generator are the task's synthesizer over its full range; "plain" is that alone (the recipe
# of the first bundled teachers).
MIXTURES: dict[str, dict[str, list[tuple[Callable[..., tuple[torch.Tensor, Params]], float]]]] = {
    "derain": {"plain": [(rain_streaks, 1.0)],
               "varied": [(rain_streaks, 0.4), (light_rain, 0.35), (kornia_rain, 0.25)]},
    "dehaze": {"plain": [(haze, 1.0)],
               "varied": [(haze, 0.5), (scene_haze, 0.5)]},
}


def degrade_mixture(task: str, mixture: str, clean: torch.Tensor, generator: torch.Generator
                    ) -> torch.Tensor:
    """Degrade each image of ``clean`` ``(N, 3, H, W)`` by one renderer of the mixture."""
    renderers = MIXTURES[task][mixture]
    weights = torch.tensor([weight for _, weight in renderers])
    choice = torch.multinomial(weights, clean.shape[0], replacement=True, generator=generator)
    degraded = torch.empty_like(clean)
    for index, (renderer, _) in enumerate(renderers):
        chosen = (choice == index).nonzero().flatten()
        if chosen.numel():
            degraded[chosen] = renderer(clean[chosen], generator)[0]
    return degraded


def photo_crops(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` crops ``(count, 3, size, size)`` of TRAINING_PHOTOS at random scales.

    Each crop picks a photograph, rescales it so its short side is 1.0-3.0 times ``size``
    (antialiased), and cuts a random square; grey photographs are repeated to RGB.

    Raises:
        SystemExit: a package holding the photographs is not installed.
    """
    import importlib

    photos = []
    for package, relative in TRAINING_PHOTOS:
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise SystemExit(f"train_teachers: photo crops need {package} "
                             "(pip install -e '.[bench]')") from None
        photos.append(read_image(Path(module.__file__).parent / relative))
    crops = []
    for _ in range(count):
        photo = photos[int(torch.randint(0, len(photos), (1,), generator=generator))]
        short = size * (1.0 + 2.0 * float(torch.rand((1,), generator=generator)))
        scale = min(1.0, short / min(photo.shape[-2:]))
        image = F.interpolate(photo.unsqueeze(0), scale_factor=scale, mode="bilinear",
                              antialias=True, align_corners=False)[0].clamp(0, 1) \
            if scale < 1.0 else photo
        top = int(torch.randint(0, image.shape[-2] - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, image.shape[-1] - size + 1, (1,), generator=generator))
        crops.append(image[:, top:top + size, left:left + size])
    return torch.stack(crops).contiguous()


def charbonnier(output: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean of ``sqrt((x - y)^2 + eps^2)`` (a smooth L1)."""
    return torch.sqrt((output - target) ** 2 + eps * eps).mean()


def render_pool(recipe: Recipe) -> torch.Tensor:
    """The clean images crops are drawn from, ``(pool + photo_crops, 3, pool_size, pool_size)``:
    procedural scenes, then photo crops."""
    generator = torch.Generator().manual_seed(recipe.seed)
    source = ProceduralSource()
    chunks = [source.sample(min(32, recipe.pool - i), recipe.pool_size, generator)
              for i in range(0, recipe.pool, 32)]
    if recipe.photo_crops:
        chunks.append(photo_crops(recipe.photo_crops, recipe.pool_size, generator))
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
    return degrade_mixture(recipe.task, recipe.mixture, clean, generator), clean


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
    log.info("%s: rendered %d clean images in %.1f s", name, pool.shape[0], pool_seconds)
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
        write_png(folder / "target" / f"{stem}.png", clean[0], overwrite=True)
        write_png(folder / "input" / f"{stem}.png", degraded[0], overwrite=True)
    return pair_folders(folder / "input", folder / "target")


def mixture_pairs(task: str, folder: Path, count: int = MIXTURE_COUNT, size: int = 128,
                  seed: int = MIXTURE_SEED) -> list[ImagePair]:
    """A held-out validation set of the "varied" training mixture: procedural scenes of
    ``size`` px degraded by the mixture's renderers (image ``i`` fixed by ``seed`` and ``i``)."""
    for index in range(count):
        generator = image_generator(seed, index)
        clean = ProceduralSource().sample(1, size, generator)
        degraded = degrade_mixture(task, "varied", clean, generator)
        write_png(folder / "target" / f"{index:04d}.png", clean[0], overwrite=True)
        write_png(folder / "input" / f"{index:04d}.png", degraded[0], overwrite=True)
    return pair_folders(folder / "input", folder / "target")


def score(network: torch.nn.Module, name: str, task: str, real: bool = True
          ) -> dict[str, dict[str, float]]:
    """Teacher and degraded-input PSNR/SSIM on the held-out sets (and the real ones)."""
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
        mixture = mixture_pairs(task, Path(tmp) / "mixture")
        results[f"varied mixture ({MIXTURE_COUNT} x 128 px, seed {MIXTURE_SEED})"] = \
            _score_pairs(adapter, mixture, info.metric_space)
        photos = photo_pairs(task, Path(tmp) / "photos")
        if photos is not None:
            results["scikit-image photos (5 x 256 px)"] = _score_pairs(adapter, photos,
                                                                      info.metric_space)
    if real and task in REAL_SETS and REAL_SETS[task][1].is_dir():
        label, degraded_dir, clean_dir = REAL_SETS[task]
        results[label] = _score_pairs(adapter, pair_folders(degraded_dir, clean_dir),
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
    parser.add_argument("--mixture", choices=("plain", "varied"), default=None,
                        help="override the recipe's degradation mixture (experiments)")
    parser.add_argument("--photo-crops", type=int, default=None,
                        help="override the recipe's number of photo crops (experiments)")
    parser.add_argument("--no-real", action="store_true",
                        help="skip the real test sets (choosing between recipes)")
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
    if args.mixture is not None:
        recipe = replace(recipe, mixture=args.mixture)
    if args.photo_crops is not None:
        recipe = replace(recipe, photo_crops=args.photo_crops)
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
    results = score(network, name, recipe.task, real=not args.no_real)
    record = {"model": name, "variant": "tiny", "config": config, "recipe": asdict(recipe),
              "params": cost.params, "macs_256": cost.macs, **timing,
              "torch": torch.__version__, "python": platform.python_version(),
              "threads": args.threads, "results": results}
    for label, values in results.items():
        log.info("%s %s: %.2f dB / %.4f (input %.2f dB / %.4f, gain %+.2f dB)", name, label,
                 values["psnr"], values["ssim"], values["input_psnr"], values["input_ssim"],
                 values["gain_db"])
    shipped = recipe == RECIPES[name] and args.out is None
    result_file = RESULTS / f"{name}.json"
    if shipped and args.evaluate_only and result_file.is_file():
        # Re-scoring the shipped weights: keep the training run's facts, add the new scores.
        previous = json.loads(result_file.read_text())
        previous["results"].update(results)
        record = previous
    if shipped:
        RESULTS.mkdir(parents=True, exist_ok=True)
        result_file.write_text(json.dumps(record, indent=2) + "\n")
    else:
        print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
