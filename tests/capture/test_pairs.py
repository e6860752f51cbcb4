import numpy as np
import pytest

from slocal.capture.pairs import exhaustive_pairs, resolve_strategy, retrieval_pairs, select_pairs, sequential_pairs
from slocal.errors import SlocalError


def test_exhaustive_and_sequential_pairs():
    assert len(exhaustive_pairs(10)) == 45
    assert sequential_pairs(5, 2) == {(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4)}


def test_retrieval_pairs_join_revisits():
    # A loop: image 9 sees what image 0 saw; sequential pairs alone never join them.
    rng = np.random.default_rng(0)
    bow = rng.random((10, 16)).astype(np.float32)
    bow[9] = bow[0] + 0.01
    bow /= np.linalg.norm(bow, axis=1, keepdims=True)
    pairs = retrieval_pairs(bow, 1)
    assert (0, 9) in pairs and all(i < j for i, j in pairs)
    assert (0, 9) not in sequential_pairs(10, 3)
    assert (0, 9) in select_pairs(10, "sequential+retrieval", 3, bow, 1)
    assert retrieval_pairs(bow[:1], 3) == set()


def test_auto_strategy_by_size():
    assert resolve_strategy("auto", 60, 60) == "exhaustive"
    assert resolve_strategy("auto", 61, 60) == "sequential+retrieval"
    assert resolve_strategy("retrieval", 5, 60) == "retrieval"
    with pytest.raises(SlocalError, match="unknown pair strategy"):
        resolve_strategy("vocabtree", 5, 60)
