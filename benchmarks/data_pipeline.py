"""What the data stages cost, and what the feature cache saves.

Prints, measured in this one run (medians over repeats):
  (a) time(load MNIST 7-1 1500/500 + poison) in seconds (IDX parse + stratified draw + BadNets)
  (b) time(extract_features, network run) / time(extract_features, cache hit)   target >= 20
      for AlexNet (untrained weights, the paper's 9216-d features) on N 28x28 images

    python -m benchmarks.data_pipeline [--repeats 3] [--n 128]     (from the repository root)
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from benchmarks._common import median_seconds, mnist_pair_split
from robust_hpo.datasets.pretrained import extract_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=128)
    args = parser.parse_args()

    holder: dict[str, object] = {}

    def load() -> None:
        holder["split"], holder["source"] = mnist_pair_split((7, 1))

    t_load = median_seconds(load, args.repeats)
    split = holder["split"]
    print(f"data: {holder['source']}")
    print(f"(a) load + poison: {t_load:.3f} s")

    images = np.ascontiguousarray(split.X_trigger[: args.n])  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as cache:
        counter = iter(range(10**6))

        def cold() -> None:  # a fresh cache folder each time: the network runs
            extract_features(images, model="alexnet", weights=None, cache_dir=f"{cache}/{next(counter)}",
                             progress=False)

        def warm() -> None:
            extract_features(images, model="alexnet", weights=None, cache_dir=f"{cache}/warm", progress=False)

        t_cold = median_seconds(cold, args.repeats)
        warm()
        t_warm = median_seconds(warm, args.repeats)
    print(f"(b) AlexNet features of {images.shape[0]} images: run {t_cold:.3f} s, cache hit {t_warm:.4f} s, "
          f"ratio {t_cold / t_warm:.0f}x (target >= 20)")


if __name__ == "__main__":
    main()
