"""The DUSt3R teacher: pairs of mapping frames through the network, aligned and fused into targets.

How and why it works: ``docs/dust3r_teacher.md``. Pair selection is
``slocal.teach.pairs.partner_pairs``, alignment ``align``, fusion ``fusion``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field

from slocal.config import config_dataclass
from slocal.data.scene import Frame, Scene
from slocal.device import resolve_device
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera
from slocal.io import read_image
from slocal.progress import make_progress
from slocal.teach.dust3r.align import PAIR_STATUSES, PairAlignment, PairSettings, align_pair, pair_depths
from slocal.teach.dust3r.checkpoint import checkpoint_help, checkpoint_identity, load_dust3r
from slocal.teach.dust3r.fusion import RESAMPLING, frame_targets, resample_to
from slocal.teach.dust3r.inference import Dust3rRunner
from slocal.teach.dust3r.preprocess import preprocess_image
from slocal.teach.pairs import partner_pairs
from slocal.teach.targets import FrameTargets, target_camera

log = logging.getLogger(__name__)

PATCH = 16
AMP_MODES = ("bf16", "fp16", "fp32")


@config_dataclass
class Dust3rTeacherConfig(PairSettings):
    """Settings of the DUSt3R teacher (method: ``docs/dust3r_teacher.md``).

    Pair ranking and alignment settings (``min_baseline`` ... ``fit_points``) are those of ``PairSettings``.

    Attributes:
        checkpoint: DUSt3R checkpoint (official ``.pth``, or a folder / state dict
            with ``config.json``); required.
        device: torch device; None: ``cuda`` when available, else ``cpu`` (resolved when teaching).
        amp: autocast precision on CUDA (``bf16``, ``fp16``, ``fp32``).
        image_size: network input size (512 for the 512 checkpoints, 224 for the 224 one).
        batch_size: pairs per forward pass.
        pairs_per_frame: pairs each mapping frame takes part in (at least, when it has candidates).
        symmetrize: also run every pair in the other order (twice the cost, two estimates per pair).
        max_side: longer side of the target grid.
        resample: ``bilinear`` (nearest across depth edges) or ``nearest`` from the network grid to the target grid.
        fusion_tolerance: relative depth difference within which estimates agree.
        scale_tolerance: a frame's estimates are first brought to their median scale; those whose
            scale differs from it by more than this (relative) are dropped.
        min_depth, max_depth: accepted metric depth range of an estimate.
    """

    checkpoint: str | Path | None = None
    device: str | None = None
    amp: Literal[AMP_MODES] = "bf16"
    image_size: Annotated[int, Field(ge=PATCH, multiple_of=PATCH)] = 512
    batch_size: Annotated[int, Field(ge=1)] = 4
    pairs_per_frame: Annotated[int, Field(ge=1)] = 3
    symmetrize: bool = False
    max_side: Annotated[int, Field(ge=1)] = 320
    resample: Literal[RESAMPLING] = "bilinear"
    fusion_tolerance: Annotated[float, Field(gt=0)] = 0.05
    scale_tolerance: Annotated[float, Field(gt=0)] = 0.3
    min_depth: Annotated[float, Field(gt=0)] = 0.05
    max_depth: float = 20.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.checkpoint is None or str(self.checkpoint) == "":
            raise SlocalError("the dust3r teacher needs a DUSt3R checkpoint (--checkpoint PATH); " + checkpoint_help())
        object.__setattr__(self, "checkpoint", str(self.checkpoint))
        if not self.min_depth < self.max_depth:
            raise SlocalError(
                f"Dust3rTeacherConfig: min_depth ({self.min_depth}) must be < max_depth ({self.max_depth})"
            )


@dataclass(frozen=True, eq=False)
class PairView:
    """One side of a network pair: a frame's processed image and camera.

    Attributes:
        index: index of the frame in ``scene.mapping`` (-1 for a bench query).
        frame: the frame (None for a bench query, whose pose is unknown).
        image: (3, H, W) float32 tensor in [-1, 1].
        camera: the processed camera (network grid).
    """

    index: int
    frame: Frame | None
    image: torch.Tensor
    camera: Camera


@dataclass(frozen=True)
class PairReport:
    """What happened to one pair (for logs and tests)."""

    view1: str
    view2: str
    alignment: PairAlignment


#: ``predict(pairs) -> predictions``: the network as the teacher uses it (replaceable in tests).
Predictor = Callable[[Sequence[tuple[PairView, PairView]]], list]


def prepare_view(index: int, frame: Frame, image_size: int) -> PairView:
    """Read and preprocess one frame's image like the official loader."""
    rgb = read_image(frame.image_path)
    if rgb.shape[:2] != (frame.camera.height, frame.camera.width):
        raise SlocalError(
            f"image is {rgb.shape[1]}x{rgb.shape[0]} but its camera is {frame.camera.width}x{frame.camera.height}",
            frame.image_path,
        )
    try:
        image, camera = preprocess_image(rgb, frame.camera, size=image_size)
    except ValueError as exc:
        raise SlocalError(f"cannot prepare the image for DUSt3R: {exc}", frame.image_path) from exc
    return PairView(index, frame, image, camera)


def check_frames(scene: Scene) -> None:
    """Refuse scenes the teacher cannot work on (too few mapping frames, images below the patch size)."""
    if len(scene.mapping) < 2:
        raise SlocalError(
            f"the dust3r teacher needs at least 2 mapping frames with known poses, "
            f"scene {scene.id} has {len(scene.mapping)}",
            scene.root,
        )
    for f in scene.mapping:
        if min(f.camera.width, f.camera.height) < PATCH:
            raise SlocalError(
                f"image is {f.camera.width}x{f.camera.height}, smaller than the DUSt3R patch size {PATCH} pixels",
                f.image_path,
            )


class Dust3rTeacher:
    """World-frame targets from DUSt3R pairs of mapping frames, scaled and placed with the known poses.

    Args:
        config: settings; the checkpoint must exist.
        predictor: replaces the network (tests); None loads ``config.checkpoint`` when teaching.
    """

    name = "dust3r"

    def __init__(self, config: Dust3rTeacherConfig, predictor: Predictor | None = None):
        self.config = config
        self._identity = checkpoint_identity(config.checkpoint)
        self._predictor = predictor
        self.pair_reports: list[PairReport] = []

    def settings(self) -> dict:
        """Every setting that changes the targets: not the device, path or batch size; the checkpoint's identity."""
        s = asdict(self.config)
        for key in ("device", "checkpoint", "batch_size"):
            s.pop(key)
        s["overlap_depths"] = list(s["overlap_depths"])
        s["checkpoint_id"] = dict(self._identity)
        return s

    def _network_predictor(self) -> Predictor:
        device = resolve_device(self.config.device)
        net = load_dust3r(self.config.checkpoint, device=device)
        runner = Dust3rRunner(net, device=device, batch_size=self.config.batch_size, amp=self.config.amp)
        amp = f", {self.config.amp} autocast" if torch.device(device).type == "cuda" else ""
        log.info("dust3r teacher on %s%s", device, amp)

        def predict(pairs: Sequence[tuple[PairView, PairView]]) -> list:
            return runner.run([(a.image, b.image) for a, b in pairs], progress=False)

        return predict

    def teach(self, scene: Scene) -> Iterator[FrameTargets]:
        c = self.config
        check_frames(scene)
        frames = scene.mapping
        pairs = partner_pairs(frames, c)
        if not pairs:
            raise SlocalError(
                f"no pair of mapping frames passes the DUSt3R pair selection (baseline >= {c.min_baseline} m, "
                f"axes within {c.max_angle_deg} deg, overlap >= {c.min_overlap})",
                scene.root,
            )
        in_pairs = {i for p in pairs for i in p}
        if len(in_pairs) < len(frames):
            log.warning(
                "dust3r teacher: %d of %d mapping frames have no acceptable partner and get no targets",
                len(frames) - len(in_pairs),
                len(frames),
            )
        # Process pairs so that frames complete early, then free their estimates.
        pairs.sort(key=lambda p: (max(p), min(p)))
        last_use = {}
        for n, (i, j) in enumerate(pairs):
            last_use[i] = last_use[j] = n
        predict = self._predictor or self._network_predictor()
        cams = {i: target_camera(frames[i], c.max_side) for i in in_pairs}
        estimates: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {i: [] for i in in_pairs}
        statuses: Counter = Counter()
        self.pair_reports = []
        no_targets = 0
        views: dict[int, PairView] = {}
        chunk = 4 * c.batch_size
        with make_progress() as bar:
            task = bar.add_task("dust3r teacher pairs", total=len(pairs), info="")
            for start in range(0, len(pairs), chunk):
                batch = pairs[start : start + chunk]
                needed = {i for p in batch for i in p}
                views = {i: v for i, v in views.items() if i in needed}
                for i in sorted(needed - set(views)):
                    views[i] = prepare_view(i, frames[i], c.image_size)
                preds = predict([(views[i], views[j]) for i, j in batch])
                if len(preds) != len(batch):
                    raise SlocalError(f"the DUSt3R network returned {len(preds)} predictions for {len(batch)} pairs")
                for (i, j), pred in zip(batch, preds):
                    status = self._add_pair(views[i], views[j], pred, cams, estimates)
                    statuses[status] += 1
                    bar.advance(task)
                bar.update(task, info=" ".join(f"{k}={v}" for k, v in sorted(statuses.items())))
                done = start + len(batch)
                for f in [f for f, last in last_use.items() if last < done]:
                    del last_use[f]
                    result = self._finish(frames[f], cams[f], estimates.pop(f))
                    if result is None:
                        no_targets += 1
                        continue
                    yield result
        log.info(
            "dust3r teacher: %d pairs (%s); %d of %d mapping frames without targets",
            len(pairs),
            ", ".join(f"{statuses[s]} {s}" for s in PAIR_STATUSES),
            no_targets + len(frames) - len(in_pairs),
            len(frames),
        )
        skipped = len(pairs) - statuses["ok"]
        if skipped:
            log.warning(
                "dust3r teacher: %d of %d pairs skipped "
                "(%d degenerate baseline, %d inconsistent with the known poses, %d failed)",
                skipped,
                len(pairs),
                statuses["degenerate"],
                statuses["inconsistent"],
                statuses["failed"],
            )

    def _add_pair(self, v1: PairView, v2: PairView, pred, cams: dict, estimates: dict) -> str:
        c = self.config
        cam1_from_cam2 = v1.frame.cam_from_world @ v2.frame.world_from_cam
        for name, arr, view in (("pts3d_1", pred.pts3d_1, v1), ("pts3d_2", pred.pts3d_2, v2)):
            if arr.shape[:2] != (view.camera.height, view.camera.width):
                raise SlocalError(
                    f"network output {name} is {arr.shape[:2]}, expected the processed image size of {view.frame.name}"
                )
        alignment = align_pair(pred.pts3d_2, pred.conf_2, v2.camera, cam1_from_cam2, c)
        self.pair_reports.append(PairReport(v1.frame.name, v2.frame.name, alignment))
        if alignment.status != "ok":
            log.debug("pair %s - %s %s: %s", v1.frame.name, v2.frame.name, alignment.status, alignment)
            return alignment.status
        depth_1, depth_2 = pair_depths(pred.pts3d_1, pred.pts3d_2, alignment.scale, cam1_from_cam2)
        for view, depth, conf in ((v1, depth_1, pred.conf_1), (v2, depth_2, pred.conf_2)):
            valid = (conf >= c.min_conf) & np.isfinite(depth) & (depth >= c.min_depth) & (depth <= c.max_depth)
            (d_t, c_t), ok = resample_to(
                cams[view.index], view.camera, [depth, conf.astype(np.float64)], valid, c.resample, c.fusion_tolerance
            )
            # float32 halves what waits in memory until the frame's last pair is done
            estimates[view.index].append((d_t.astype(np.float32), c_t.astype(np.float32), ok))
        return "ok"

    def _finish(self, frame: Frame, camera: Camera, est: list) -> FrameTargets | None:
        if not est:
            return None
        depth = np.stack([e[0] for e in est]).astype(np.float64)
        conf = np.stack([e[1] for e in est]).astype(np.float64)
        valid = np.stack([e[2] for e in est])
        t = frame_targets(frame, camera, depth, conf, valid, self.config.fusion_tolerance, self.config.scale_tolerance)
        return t if t.num_valid else None
