"""t-SNE by Barnes-Hut and by FFT interpolation (openTSNE, with the options `reduce-embeddings` uses), CPU
seconds per point count in one run: where chatspace's switch (chatspace/maps/reduce.py FFT_FROM_POINTS)
belongs. The points are 384-d vectors around 20 topic centres (text embeddings cluster).

    python benchmarks/tsne_methods.py [POINTS ...]   (default: 240 2000 3000 5000)
"""

from __future__ import annotations

import sys
import time

import numpy as np


def seconds(vectors: np.ndarray, method: str) -> float:
    from openTSNE import TSNE

    n = len(vectors)
    tsne = TSNE(
        perplexity=min(30.0, (n - 1) / 3.0),
        metric="cosine",
        random_state=3,
        negative_gradient_method=method,
        early_exaggeration_iter=250,
        n_iter=500,
        n_jobs=1,
        verbose=False,
    )
    t = time.process_time()
    tsne.fit(vectors)
    return time.process_time() - t


def main(argv: list[str]) -> int:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 384))
    for n in map(int, argv or ["240", "2000", "3000", "5000"]):
        v = (centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, 384))).astype(np.float32)
        bh, fft = seconds(v, "bh"), seconds(v, "fft")
        print(f"{n:>7,} points: Barnes-Hut {bh:6.2f} s, FFT {fft:6.2f} s, FFT/Barnes-Hut {fft / bh:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
