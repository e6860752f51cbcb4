from pathlib import Path

import pytest


@pytest.fixture
def fake_ckpt(tmp_path) -> Path:
    """A file that stands in for a DUSt3R checkpoint (the teacher hashes it, tests never load it)."""
    path = tmp_path / "weights.pth"
    path.write_bytes(b"not really weights" * 100)
    return path
