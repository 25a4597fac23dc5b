"""The bundled teachers' scores as Markdown tables: the shipped teachers beside the first ones.

Reads what ``bench/train_teachers.py`` wrote: ``bench/results/teachers/<model>.json`` (the
shipped teachers) and ``bench/results/teachers/v1/<model>.json`` (the first bundled teachers,
trained on procedural scenes and one rain/haze synthesizer, re-scored on the same sets with
``train_teachers.py <model> --evaluate-only --out <their weights>``). Prints, per teacher and
set, PSNR of the degraded input, of each teacher and its gain over the input (dB), and the
change from the first teacher; the real sets first (with the issue's targets), then the
synthetic ones. These are the tables of docs/teachers.md and docs/RESULTS.md.

Usage: ``python bench/teacher_cards.py [--models ffa hinet mprnet]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "teachers"
REAL_TARGETS = {"derain": 3.0, "dehaze": 9.0}  # dB over the degraded input (issue 19)


def load(model: str, folder: Path = RESULTS) -> dict:
    """The record ``train_teachers.py`` wrote for ``model`` in ``folder``."""
    return json.loads((folder / f"{model}.json").read_text())


def is_real(label: str) -> bool:
    return "real benchmark" in label


def rows(models: list[str], real: bool) -> list[str]:
    """Markdown rows: model, set, input, first teacher (gain), shipped teacher (gain), change."""
    lines = []
    for model in models:
        new, old = load(model), load(model, RESULTS / "v1")
        task = new["recipe"]["task"]
        for label, score in new["results"].items():
            if is_real(label) != real:
                continue
            first = old["results"].get(label)
            first_cell = (f"{first['psnr']:.2f} ({first['gain_db']:+.2f})" if first else "-")
            change = f"{score['psnr'] - first['psnr']:+.2f}" if first else "-"
            cells = [model, label, f"{score['input_psnr']:.2f}", first_cell,
                     f"{score['psnr']:.2f} ({score['gain_db']:+.2f})", change]
            if real:
                target = REAL_TARGETS[task]
                verdict = "met" if score["gain_db"] >= target else \
                    f"missed by {target - score['gain_db']:.2f}"
                cells.append(f"+{target:.0f} dB: {verdict}")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["hinet", "mprnet", "ffa"])
    args = parser.parse_args()
    header = "| teacher | set | input dB | first teacher dB (gain) | shipped teacher dB (gain) " \
             "| change |"
    print("Real test sets (scored once, never used to choose)\n")
    print(header + " target |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows(args.models, real=True)))
    print("\nSynthetic sets (held out: other seeds than training)\n")
    print(header)
    print("|---|---|---|---|---|---|")
    print("\n".join(rows(args.models, real=False)))
    print("\nRecipes and training time\n")
    print("| teacher | steps | peak LR | clean pool | mixture | wall time (s) | params | "
          "GMACs at 3x256x256 |")
    print("|---|---|---|---|---|---|---|---|")
    for model in args.models:
        record = load(model)
        recipe = record["recipe"]
        pool = f"{recipe['pool']} procedural + {recipe.get('photo_crops', 0)} photo crops"
        print(f"| {model} | {recipe['steps']} | {recipe['lr']:g} | {pool} | "
              f"{recipe.get('mixture', 'plain')} | {record.get('train_seconds', 0):.0f} | "
              f"{record['params']:,} | {record['macs_256'] / 1e9:.2f} |")


if __name__ == "__main__":
    main()
