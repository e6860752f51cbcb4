"""Fixtures for the distillation tests: a tiny rendered RGB-D scene, its depth targets, a trained tiny student."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.distill_fixtures import LOSS_TEST_TRAIN, TINY_SCENE, TINY_STUDENT, tiny_train
from slocal.data import load_scene
from slocal.data.synth import render_scene
from slocal.teach import ensure_targets, make_teacher


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("distill") / "data"
    render_scene(root / "tiny", TINY_SCENE)
    return root


@pytest.fixture(scope="session")
def tiny_scene(tiny_data):
    return load_scene(tiny_data, "tiny")


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("distill-runs")


@pytest.fixture(scope="session")
def tiny_targets(tiny_scene, tiny_runs):
    return ensure_targets(tiny_scene, make_teacher("depth"), tiny_runs)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets gain nothing from threads; on a shared, busy machine OpenMP barriers make them crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def trained_tiny(tiny_scene, tiny_targets, tmp_path_factory):
    """A tiny student trained 300 iterations on the synthetic scene (shared by several tests)."""
    from slocal.distill.trainer import train_student

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("trained") / "model.pt"
        return train_student(tiny_scene, tiny_targets, TINY_STUDENT, tiny_train(**LOSS_TEST_TRAIN), out, device="cpu")
    finally:
        torch.set_num_threads(before)
