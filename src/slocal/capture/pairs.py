"""Which image pairs to match: exhaustive for small sets, else neighbours in time plus retrieval.

pycolmap 4.2.1's sequential matcher closes loops only with a vocabulary-tree
file (``loop_detection`` needs ``vocab_tree_path``), which cannot be downloaded
here; so the pairs are chosen here and matched with ``match_image_pairs``:

- ``exhaustive``: every pair; the default up to ``exhaustive_max`` images.
- ``sequential``: each image with the next ``overlap`` ones in capture order
  (video time, or file-name order for photos, which phones number in order).
- ``retrieval``: each image with its ``k`` most similar images by a bag of
  visual words trained on the scene's own SIFT descriptors
  (``slocal.capture.retrieval``): this closes loops and joins revisits.
- ``auto``: exhaustive up to ``exhaustive_max`` images, else sequential +
  retrieval (benchmarks/results/2026-12-05-map/ has the measurements).
"""

from __future__ import annotations

import numpy as np

from slocal.errors import SlocalError

STRATEGIES = ("auto", "exhaustive", "sequential", "retrieval", "sequential+retrieval")


def exhaustive_pairs(n: int) -> set[tuple[int, int]]:
    """Every pair ``(i, j)``, ``i < j``."""
    return {(i, j) for i in range(n) for j in range(i + 1, n)}


def sequential_pairs(n: int, overlap: int) -> set[tuple[int, int]]:
    """Each image with the next ``overlap`` images."""
    return {(i, j) for i in range(n) for j in range(i + 1, min(n, i + overlap + 1))}


def retrieval_pairs(bow_IK: np.ndarray, k: int) -> set[tuple[int, int]]:
    """Each image with its ``k`` most similar others (cosine of unit BoW vectors), as ``(min, max)`` pairs."""
    n = len(bow_IK)
    if n < 2 or k <= 0:
        return set()
    sims = bow_IK @ bow_IK.T
    np.fill_diagonal(sims, -np.inf)
    k = min(k, n - 1)
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return {(min(i, int(j)), max(i, int(j))) for i in range(n) for j in top[i]}


def resolve_strategy(strategy: str, n: int, exhaustive_max: int) -> str:
    """The strategy ``auto`` stands for with ``n`` images; others unchanged."""
    if strategy not in STRATEGIES:
        raise SlocalError(f"unknown pair strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if strategy == "auto":
        return "exhaustive" if n <= exhaustive_max else "sequential+retrieval"
    return strategy


def select_pairs(
    n: int, strategy: str, overlap: int, bow_IK: np.ndarray | None = None, k: int = 0
) -> list[tuple[int, int]]:
    """The pairs of a resolved strategy (``resolve_strategy``), sorted.

    Args:
        n: images, indexed in capture order.
        strategy: ``exhaustive``, ``sequential``, ``retrieval`` or ``sequential+retrieval``.
        overlap: neighbours in order (sequential).
        bow_IK: unit image vectors (retrieval).
        k: retrieved images per image.
    """
    if strategy == "exhaustive":
        return sorted(exhaustive_pairs(n))
    pairs: set[tuple[int, int]] = set()
    if "sequential" in strategy:
        pairs |= sequential_pairs(n, overlap)
    if "retrieval" in strategy:
        if bow_IK is None:
            raise ValueError("retrieval pairs need image vectors")
        pairs |= retrieval_pairs(bow_IK, k)
    return sorted(pairs)
