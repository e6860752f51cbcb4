"""A bag of visual words over SIFT descriptors: image retrieval without a downloaded vocabulary.

Spherical k-means (k-means++ seeding) on unit descriptors, sqrt(tf) x idf
image vectors, cosine similarity. Kept hand-written on purpose: pycolmap's
vocabulary-tree retrieval (``VisualIndex``, ``match_vocabtree``) needs a trained
vocabulary file that cannot be downloaded here, while this one is trained on
the scene's own descriptors in seconds. Used by ``slocal map`` (which image
pairs to match) and by the SIFT baseline (which mapping images a query is
matched against).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse


def descriptors_to_float(desc_NC: np.ndarray) -> np.ndarray:
    """Quantised SIFT descriptors -> float32 unit vectors (for dot-product matching)."""
    d = desc_NC.astype(np.float32)
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    return d / np.maximum(norm, 1e-6)


def nearest_word(x_NC: np.ndarray, words_KC: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """Index of the most similar word (largest dot product) for each row, int64 (N,)."""
    out = np.empty(len(x_NC), np.int64)
    for s in range(0, len(x_NC), chunk):
        out[s : s + chunk] = np.argmax(x_NC[s : s + chunk] @ words_KC.T, axis=1)
    return out


def _kmeans_pp(x_NC: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding for unit vectors (squared distance 2 - 2 cos)."""
    words = np.empty((k, x_NC.shape[1]), np.float32)
    words[0] = x_NC[rng.integers(len(x_NC))]
    d2 = np.maximum(2.0 - 2.0 * (x_NC @ words[0]), 0.0)
    for i in range(1, k):
        total = float(d2.sum())
        pick = rng.choice(len(x_NC), p=d2 / total) if total > 0 else rng.integers(len(x_NC))
        words[i] = x_NC[pick]
        d2 = np.minimum(d2, np.maximum(2.0 - 2.0 * (x_NC @ words[i]), 0.0))
    return words


def train_vocabulary(x_NC: np.ndarray, size: int, iterations: int, seed: int) -> np.ndarray:
    """Spherical k-means (k-means++ seeding) of unit descriptors.

    Args:
        x_NC: float32 unit vectors.
        size: number of words (reduced to N when fewer samples).
        iterations: Lloyd iterations after seeding.
        seed: seeds the sampling.

    Returns:
        float32 (K, C) unit word vectors.
    """
    rng = np.random.default_rng(seed)
    k = min(size, len(x_NC))
    words = _kmeans_pp(x_NC, k, rng)
    for _ in range(iterations):
        assign = nearest_word(x_NC, words)
        ones = np.ones(len(x_NC), np.float32)
        onehot = scipy.sparse.csr_matrix((ones, (assign, np.arange(len(x_NC)))), shape=(k, len(x_NC)))
        sums = np.asarray(onehot @ x_NC)
        empty = np.bincount(assign, minlength=k) == 0
        # Re-seed empty words from random samples so the vocabulary keeps its size.
        sums[empty] = x_NC[rng.choice(len(x_NC), int(empty.sum()), replace=False)]
        words = (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    return words


def bow_vector(words_of_features: np.ndarray, idf_K: np.ndarray) -> np.ndarray:
    """Unit sqrt(tf) x idf vector (float32, (K,)) of one image's word assignments."""
    tf = np.bincount(words_of_features, minlength=len(idf_K)).astype(np.float32)
    v = np.sqrt(tf) * idf_K
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def bow_index(
    descriptors: Sequence[np.ndarray], size: int, iterations: int, samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train a vocabulary on a random subset of all images' descriptors and describe every image.

    Args:
        descriptors: per image, uint8 (N_i, 128) SIFT descriptors.
        size: visual words; iterations: k-means iterations; samples: descriptors it is trained on.
        seed: seeds the subset and the k-means.

    Returns:
        words_KC (float32 unit), idf_K (float32), bow_IK (float32, one unit row per image).
    """
    rng = np.random.default_rng(seed)
    every = np.concatenate(descriptors)
    sample = every[rng.choice(len(every), min(samples, len(every)), replace=False)]
    words = train_vocabulary(descriptors_to_float(sample), size, iterations, seed)
    assignments = [nearest_word(descriptors_to_float(d), words) for d in descriptors]
    df = np.zeros(len(words), np.int64)
    for a in assignments:
        df[np.unique(a)] += 1
    idf = np.log(len(descriptors) / np.maximum(df, 1)).astype(np.float32)
    bow = np.stack([bow_vector(a, idf) for a in assignments]).astype(np.float32)
    return words, idf, bow
