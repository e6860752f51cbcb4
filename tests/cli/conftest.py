"""Session fixtures of the CLI subprocess tests: one tiny rendered scene, a tiny config, one tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers.cli_run import TINY_ITERATIONS, run_slocal
from helpers.distill_fixtures import TINY_SCENE, TINY_STUDENT, tiny_train
from slocal.data.synth import render_scene
from slocal.distill.config import to_plain


@pytest.fixture(scope="session")
def cli_data(tmp_path_factory) -> Path:
    """Data root holding ``tiny``: the 12-frame 128x96 procedural scene (sequence0: 2 queries)."""
    root = tmp_path_factory.mktemp("cli-data") / "data"
    render_scene(root / "tiny", TINY_SCENE)
    return root


@pytest.fixture(scope="session")
def cli_config(tmp_path_factory) -> Path:
    """The tiny student and training settings as a --config file; a checkpoint after every iteration."""
    train = {
        k: v for k, v in to_plain(tiny_train(checkpoint_every_s=0.0)).items() if k not in ("minutes", "iterations")
    }
    path = tmp_path_factory.mktemp("cli-config") / "tiny.yaml"
    path.write_text(yaml.safe_dump({"student": to_plain(TINY_STUDENT), "train": train}))
    return path


@pytest.fixture(scope="session")
def cli_model(cli_data, cli_config, tmp_path_factory) -> Path:
    """A tiny student trained uninterrupted by `slocal distill --iterations TINY_ITERATIONS`."""
    runs = tmp_path_factory.mktemp("cli-runs")
    r = run_slocal(
        "distill",
        "--scene",
        "tiny",
        "--student",
        "cnn",
        "--config",
        cli_config,
        "--iterations",
        TINY_ITERATIONS,
        "--device",
        "cpu",
        "--data-root",
        cli_data,
        "--runs",
        runs,
        "--json",
    )
    assert r.returncode == 0, r.stderr
    model = Path(json.loads(r.stdout)["model"])
    assert model.is_file()
    return model
