"""The end-to-end recipe: the whole student network sees augmented mapping images at every step.

It trains the ``cnn``, ``timm`` and ``vit`` students (from scratch, or from pretrained backbone
weights). Each rank draws batches of whole images from its shard of the mapping frames
(``data.BatchSampler``: order and augmentation from a numpy generator); the network's output
cells are compared with the teacher's targets sampled at the same cells. The loop around it
(budget, schedules, DDP, validation, checkpoints, the model file) is ``loop.run_training``.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch

from slocal.distill.data import (
    BatchSampler,
    load_train_frames,
    load_val_frames,
    recipe_metres_per_unit,
    scene_centre,
    split_mapping,
)
from slocal.distill.loop import Prepared, Run, StepOutput
from slocal.distill.students import build_student, input_size, load_pretrained, num_params

log = logging.getLogger(__name__)


class EndToEndRecipe:
    """Whole images through the whole network (``Recipe`` of ``loop.run_training``).

    Args:
        pretrained: ``"timm"`` (timm's own weights, needs the network) or a local weights file
            for the backbone; None trains from scratch. Not read on resume: the weights come
            from the checkpoint.
    """

    name = "end-to-end"
    label = "distill"

    def __init__(self, pretrained: str | Path | None = None):
        self.pretrained = pretrained
        self.sampler: BatchSampler | None = None

    def prepare(self, run: Run, checkpoint: dict | None) -> Prepared:
        cfg, student_cfg, env, dev = run.train, run.student, run.env, run.device
        camera = run.scene.mapping[0].camera
        image_size = input_size(student_cfg, camera.width, camera.height)
        centre = np.asarray(checkpoint["centre"], np.float64) if checkpoint is not None else scene_centre(run.targets)
        train_scene, held_out = split_mapping(run.scene, cfg.val_frames, cfg.val_stretch)
        frames = load_train_frames(train_scene, run.targets, image_size, centre)
        metres_per_unit, scale_source = recipe_metres_per_unit(run.scene, run.targets)
        shard = list(range(len(frames)))[env.rank :: env.world_size]
        self.sampler = BatchSampler(
            frames, shard, cfg, student_cfg.stride, seed=cfg.seed * 1000 + env.rank, centre=centre
        )

        torch.manual_seed(cfg.seed)
        fresh = checkpoint is None
        net = build_student(student_cfg, image_size, pretrained_timm=self.pretrained == "timm" and fresh)
        if self.pretrained is not None and self.pretrained != "timm" and fresh:
            counts = load_pretrained(net, self.pretrained)
            log.info("loaded %d backbone tensors from %s", counts["loaded"], self.pretrained)
        net = net.to(dev)
        self.channels_last = student_cfg.channels_last
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.uncertainty = student_cfg.uncertainty
        self.device = dev
        self.seed = cfg.seed + env.rank
        self.uv_N2 = torch.from_numpy(self.sampler.uv_N2).float().to(dev)
        self.mean = torch.tensor(student_cfg.mean, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
        self.std = torch.tensor(student_cfg.std, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
        return Prepared(
            net=net,
            module=net,
            param_groups=[{"params": list(net.parameters()), "lr_factor": 1.0}],
            centre=centre,
            image_size=image_size,
            camera=camera,
            val_frames=load_val_frames(held_out, image_size),
            val_names=[f.name for f in held_out],
            train_frames=len(frames),
            metres_per_unit=metres_per_unit,
            scale_source=scale_source,
            detail=f"{student_cfg.arch}, {num_params(net) / 1e6:.2f} M params",
        )

    def start(self, rng_state: dict | None) -> None:
        if rng_state is None:
            torch.manual_seed(self.seed)
            random.seed(self.seed)
            return
        torch.set_rng_state(rng_state["torch"])
        self.sampler.load_state_dict(rng_state["numpy_sampler"])
        py = rng_state["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        if "cuda" in rng_state and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng_state["cuda"])

    def rng_state(self) -> dict:
        state = {
            "torch": torch.get_rng_state(),
            "numpy_sampler": self.sampler.state_dict(),
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state()
        return state

    def step(self, forward) -> StepOutput:
        dev = self.device
        batch = self.sampler.next_batch()
        x = torch.from_numpy(batch.images_BHW3).to(dev).permute(0, 3, 1, 2)
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out_B = forward(x)
        return StepOutput(
            pred_BN3=out_B[:, :3].flatten(2).transpose(1, 2),
            coords_BN3=torch.from_numpy(batch.coords_BN3).to(dev),
            valid_BN=torch.from_numpy(batch.valid_BN).to(dev),
            weight_BN=torch.from_numpy(batch.weight_BN).to(dev),
            uv_N2=self.uv_N2,
            K_B33=torch.from_numpy(batch.K_B33),
            cam_from_world_B34=torch.from_numpy(batch.cam_from_world_B34),
            log_unc_BN=out_B[:, 3].flatten(1) if self.uncertainty else None,
        )

    def summary(self) -> dict:
        return {"pretrained": None if self.pretrained is None else str(self.pretrained)}

    def close(self) -> None:
        pass
