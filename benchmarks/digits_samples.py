"""Sample grid and classifier accuracy of the shipped digits DiTs.

    python benchmarks/digits_samples.py         # writes docs/img/digits-dit-samples.png (about 1 min, 1 thread)
    python benchmarks/digits_samples.py --guidance 1,1.5,2,3 --no-grid   # accuracy per CFG scale

Draws ``--per-class`` samples of every digit from ``digits-dit`` (rows = classes, same
seed), and prints, for ``digits-dit`` and ``digits-dit-small``, the share of samples that
an RBF SVM fit on the real digits assigns to the class they were generated for
(overall and per class), next to that classifier's accuracy on held-out real digits.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from hasten.diffusion import models
from hasten.diffusion.bench.plots import image_rows
from hasten.diffusion.models.digits import NUM_CLASSES, DigitClassifier, sample

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "img" / "digits-dit-samples.png"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="digits-dit,digits-dit-small", help="comma-separated model names")
    parser.add_argument("--steps", type=int, default=50, help="Euler steps")
    parser.add_argument("--guidance", default=None, help="comma-separated CFG scales (default: the manifest's)")
    parser.add_argument("--per-class", type=int, default=10, help="samples per digit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="grid PNG (of the first model)")
    parser.add_argument("--no-grid", action="store_true", help="only print accuracies")
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[tuple[str, float], float]:
    """Run the script; returns {(model, guidance): overall accuracy}."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    classifier = DigitClassifier.fit()
    print(f"classifier (RBF SVM on real 8x8 digits): held-out real accuracy {classifier.holdout_accuracy:.1%}")
    labels = torch.arange(NUM_CLASSES).repeat_interleave(args.per_class)
    results = {}
    for index, name in enumerate(args.models.split(",")):
        loaded = models.load(name)
        scales = [float(g) for g in args.guidance.split(",")] if args.guidance else [loaded.extra.get("guidance", 2.0)]
        for guidance in scales:
            started = time.perf_counter()
            images = sample(loaded.module, labels, steps=args.steps, guidance=guidance, seed=args.seed)
            seconds = time.perf_counter() - started
            overall, per_class = classifier.accuracy(images, labels)
            results[(name, guidance)] = overall
            per = " ".join(f"{c}:{a:.0%}" for c, a in per_class.items())
            print(
                f"{name} guidance {guidance:g}, {args.steps} steps, {len(labels)} samples in {seconds:.1f} s: "
                f"accuracy {overall:.1%} | per class {per}"
            )
            if index == 0 and guidance == scales[0] and not args.no_grid:
                rows = [(f"digit {c}", images[labels == c].numpy()) for c in range(NUM_CLASSES)]
                image_rows(rows, args.out, cell_inches=0.3)
                print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
