"""Batched DUSt3R inference over image pairs."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from slocal.progress import make_progress
from slocal.teach.dust3r.model import Dust3rNet

log = logging.getLogger(__name__)

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


@dataclass(frozen=True)
class PairPrediction:
    """Network output for one pair, everything in view 1's camera frame (arbitrary scale).

    Attributes:
        pts3d_1: (H1, W1, 3) float32 points of view 1's pixels.
        conf_1: (H1, W1) float32 confidences (>= 1).
        pts3d_2: (H2, W2, 3) float32 points of view 2's pixels.
        conf_2: (H2, W2) float32 confidences.
    """

    pts3d_1: np.ndarray
    conf_1: np.ndarray
    pts3d_2: np.ndarray
    conf_2: np.ndarray


class Dust3rRunner:
    """Runs a :class:`Dust3rNet` over image pairs in batches.

    Pairs whose two images have the same shapes are batched together (up to
    ``batch_size``); results come back in input order. On CUDA the encoder and
    decoder run under ``amp`` autocast while the heads stay fp32 (as in the
    official code); on CPU everything is fp32.

    Args:
        net: the network (e.g. from :func:`~slocal.teach.dust3r.load_dust3r`); moved to ``device``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
        batch_size: pairs per forward pass.
        amp: ``"bf16"``, ``"fp16"`` or ``"fp32"`` (no autocast); used on CUDA only.
    """

    def __init__(self, net: Dust3rNet, device: str | torch.device = "cpu", batch_size: int = 1, amp: str = "bf16"):
        if amp not in AMP_DTYPES:
            raise ValueError(f"amp must be one of {tuple(AMP_DTYPES)}, got {amp!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.batch_size = batch_size
        self.amp_dtype = AMP_DTYPES[amp] if self.device.type == "cuda" else None

    def _forward(self, img1_B3HW: torch.Tensor, img2_B3HW: torch.Tensor) -> tuple[dict, dict]:
        def view(img: torch.Tensor) -> dict[str, torch.Tensor]:
            img = img.to(self.device, non_blocking=True)
            shape = torch.tensor(img.shape[-2:], dtype=torch.int32, device=self.device)
            return {"img": img, "true_shape": shape[None].repeat(img.shape[0], 1)}

        if self.amp_dtype is None:
            return self.net(view(img1_B3HW), view(img2_B3HW))
        with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype):
            return self.net(view(img1_B3HW), view(img2_B3HW))

    @torch.inference_mode()
    def run(self, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], progress: bool = True) -> list[PairPrediction]:
        """Predict point maps for image pairs.

        Args:
            pairs: (img1, img2) tensors (3, H, W) in [-1, 1] as made by
                :func:`~slocal.teach.dust3r.preprocess_image`; sizes may differ between pairs.
            progress: show a progress bar over pairs.

        Returns:
            One :class:`PairPrediction` per pair, in input order.
        """
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, (img1, img2) in enumerate(pairs):
            if img1.ndim != 3 or img2.ndim != 3 or img1.shape[0] != 3 or img2.shape[0] != 3:
                raise ValueError(f"pair {i}: expected (3, H, W) images, got {tuple(img1.shape)}, {tuple(img2.shape)}")
            groups[(tuple(img1.shape), tuple(img2.shape))].append(i)
        results: list[PairPrediction | None] = [None] * len(pairs)
        with make_progress() as bar:
            task = bar.add_task("DUSt3R pairs", total=len(pairs), info="", visible=progress)
            for indices in groups.values():
                for start in range(0, len(indices), self.batch_size):
                    batch = indices[start : start + self.batch_size]
                    img1 = torch.stack([pairs[i][0] for i in batch])
                    img2 = torch.stack([pairs[i][1] for i in batch])
                    pred1, pred2 = self._forward(img1, img2)
                    arrays = [
                        t.float().cpu().numpy()
                        for t in (pred1["pts3d"], pred1["conf"], pred2["pts3d_in_other_view"], pred2["conf"])
                    ]
                    for j, i in enumerate(batch):
                        results[i] = PairPrediction(*(np.ascontiguousarray(a[j]) for a in arrays))
                    bar.advance(task, len(batch))
        log.debug("DUSt3R ran %d pairs in %d shape groups", len(pairs), len(groups))
        return results  # type: ignore[return-value]
