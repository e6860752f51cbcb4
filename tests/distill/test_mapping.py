import pytest
import torch

from slocal.distill.mapping import drop_coarsest_level


def test_drop_coarsest_level_zeroes_only_the_last_level_of_some_cells():
    B, fine, coarse = 20000, 5, 3
    feat = torch.ones(B, fine + coarse, 1, 1)
    out = drop_coarsest_level(feat, coarse, 0.25, torch.Generator().manual_seed(0))
    # Finer levels untouched; each cell's coarsest block is either all zero or exactly as it was
    # (no rescaling: inference always sees the block as training's "kept" mode did).
    assert torch.equal(out[:, :fine], feat[:, :fine])
    block = out[:, fine:, 0, 0]
    dropped = (block == 0).all(1)
    kept = (block == 1).all(1)
    assert bool((dropped | kept).all())
    assert abs(float(dropped.float().mean()) - 0.25) < 0.01


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_drop_coarsest_level_follows_its_generator(device):
    feat = torch.randn(64, 8, 1, 1, device=device)
    a = drop_coarsest_level(feat, 3, 0.5, torch.Generator().manual_seed(7))
    b = drop_coarsest_level(feat, 3, 0.5, torch.Generator().manual_seed(7))
    c = drop_coarsest_level(feat, 3, 0.5, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # The same draw whatever the device: the generator lives on the CPU.
    assert torch.equal(a.cpu(), drop_coarsest_level(feat.cpu(), 3, 0.5, torch.Generator().manual_seed(7)))
