"""Where one head step of a buffer student's training goes, part by part, on this machine.

The step is ``slocal.distill.mapping.BufferRecipe``'s: a batch of buffer cells drawn as
``CellSampler.cell_batch`` draws them (sorted indices into a float16 buffer), the student's
``forward_features``, the coordinate and reprojection losses, the backward pass and the fused
AdamW step. The buffer is random data of the demo's shape (``--passes`` x 40 x 30 cells of the
encoder's channels): the step's cost depends on shapes, not values. Beside it, one bare matrix
product of the head's hidden-layer shape gives the rate the machine's BLAS reaches on it.

Usage::

    python benchmarks/head_step_time.py --student ace-lite0-std --steps 1500 --name 2026-12-07-mvs-sparse/head_step_time

Results: ``benchmarks/results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from common import write_results
from slocal.distill.buffer import FeatureBuffer
from slocal.distill.config_files import load_configs
from slocal.distill.losses import coordinate_loss, reprojection_loss
from slocal.distill.mapping import CellSampler
from slocal.distill.optim import make_optimizer
from slocal.distill.students import build_student

PARTS = ("batch", "forward", "losses", "backward", "optimizer")


def random_buffer(passes: int, image_size: tuple[int, int], channels: int, seed: int) -> FeatureBuffer:
    """A ``FeatureBuffer`` of random features and targets with the demo's shapes (every cell inside)."""
    rng = np.random.default_rng(seed)
    h, w = image_size[1] // 8, image_size[0] // 8
    n = h * w
    v, u = np.mgrid[0:h, 0:w]
    K = np.array([[260.0, 0, 160.0], [0, 260.0, 120.0], [0, 0, 1]], np.float32)
    cam_from_world = np.hstack([np.eye(3), [[0.0], [0.0], [3.0]]]).astype(np.float32)
    return FeatureBuffer(
        image_size=image_size,
        feat_PNC=rng.standard_normal((passes, n, channels), dtype=np.float32).astype(np.float16),
        coords_PN3=rng.standard_normal((passes, n, 3), dtype=np.float32),
        valid_PN=np.ones((passes, n), bool),
        inside_PN=np.ones((passes, n), bool),
        weight_PN=np.ones((passes, n), np.float32),
        uv_N2=np.stack([u.ravel() * 8 + 4.0, v.ravel() * 8 + 4.0], 1).astype(np.float32),
        K_P33=np.repeat(K[None], passes, 0),
        cam_from_world_P34=np.repeat(cam_from_world[None], passes, 0),
        frame_P=np.arange(passes) // 16,
        frame_names=tuple(f"frame-{i:06d}" for i in range(-(-passes // 16))),
    )


def matmul_gflops(rows: int, width: int, repeats: int = 2000) -> float:
    """GFLOP/s of one (rows x width) @ (width x width) float32 product, the head's hidden-layer shape."""
    a, b = torch.randn(rows, width), torch.randn(width, width)
    for _ in range(50):
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2.0 * rows * width * width * repeats / (time.perf_counter() - t0) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default="ace-lite0-std", help="a buffer student's preset")
    parser.add_argument("--steps", type=int, default=1500, help="timed steps (after 200 untimed)")
    parser.add_argument("--passes", type=int, default=1600, help="buffer passes (the demo: 100 frames x 16)")
    parser.add_argument("--name", default="head_step_time", help="results path under benchmarks/results/")
    args = parser.parse_args()

    student_cfg, train_cfg = load_configs(args.student)
    torch.manual_seed(0)
    net = build_student(student_cfg, (320, 240))
    head_params = [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("encoder.")]
    opt = make_optimizer(head_params, train_cfg, torch.device("cpu"))
    buffer = random_buffer(args.passes, (320, 240), net.encoder.channels, seed=0)
    sampler = CellSampler(buffer, seed=17)
    net.train()

    spent = dict.fromkeys(PARTS, 0.0)
    for i in range(args.steps + 200):
        t = [time.perf_counter()]
        batch = sampler.cell_batch(train_cfg.batch_cells)
        t.append(time.perf_counter())
        pred_BN3 = net.forward_features(batch["feat"]).flatten(2).transpose(1, 2)
        t.append(time.perf_counter())
        # A mid-run step's losses (both on): their scale, clamp and depth floor change values, not the cost.
        loss = coordinate_loss(pred_BN3, batch["coords"], batch["valid"], None, None, batch["weight"], 0.2)
        loss = loss + train_cfg.reproj_weight * reprojection_loss(
            pred_BN3, batch["uv"], batch["K"], batch["pose"], 10.0, 2.0, batch["inside"], min_depth=0.5
        )
        t.append(time.perf_counter())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t.append(time.perf_counter())
        opt.step()
        float(loss.detach())
        t.append(time.perf_counter())
        if i >= 200:
            for part, a, b in zip(PARTS, t[:-1], t[1:]):
                spent[part] += b - a
    total = sum(spent.values())
    ms = {part: 1000.0 * s / args.steps for part, s in spent.items()}
    gflops = matmul_gflops(train_cfg.batch_cells, student_cfg.head_width)
    # Multiply-adds of the head's linear layers per cell; the backward pass costs twice the forward.
    head_ids = {id(p) for p in head_params}
    weights = sum(p.numel() for n, p in net.named_parameters() if n.endswith("weight") and id(p) in head_ids)
    head_gflop = 2.0 * train_cfg.batch_cells * weights / 1e9
    head_rate = 3.0 * head_gflop / ((spent["forward"] + spent["backward"]) / args.steps)
    payload = {
        "student": student_cfg.name,
        "steps": args.steps,
        "batch_cells": train_cfg.batch_cells,
        "threads": torch.get_num_threads(),
        "ms_per_step": 1000.0 * total / args.steps,
        "steps_per_s": args.steps / total,
        "ms_by_part": ms,
        "matmul_gflops": gflops,
        "head_gflops": head_rate,
    }
    rows = "\n".join(f"| {part} | {ms[part]:.2f} | {100.0 * spent[part] / total:.0f} |" for part in PARTS)
    markdown = (
        f"# One head step of `{student_cfg.name}`, part by part\n\n{{header}}"
        f"{args.steps} steps of {train_cfg.batch_cells} cells on {torch.get_num_threads()} threads (after 200 "
        f"untimed), a random buffer of {args.passes} passes: **{payload['ms_per_step']:.2f} ms a step, "
        f"{payload['steps_per_s']:.1f} steps/s**.\n\n| part | ms | % |\n|---|---|---|\n{rows}\n\n"
        f"A bare ({train_cfg.batch_cells} x {student_cfg.head_width}) @ ({student_cfg.head_width} x "
        f"{student_cfg.head_width}) float32 product: {gflops:.0f} GFLOP/s; the head's forward and backward "
        f"passes together: {head_rate:.0f} GFLOP/s ({head_gflop:.2f} GFLOP forward a step, "
        "the backward counted as twice that).\n"
    )
    write_results(args.name, payload, markdown)
    print(markdown.replace("{header}", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
