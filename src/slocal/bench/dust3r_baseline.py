"""The ``dust3r`` bench baseline: what localizing one query with the DUSt3R teacher itself costs.

Per query:

1. **Retrieval** (no ground truth involved): the mapping frame whose
   thumbnail is most similar to the query's. A thumbnail is the grey image
   resized to ``thumb_size`` (area averaging), minus its mean, unit norm;
   similarity is the dot product (normalised cross-correlation of tiny images).
   With ``scale="pair"`` only mapping frames that have a scale partner (below)
   can be retrieved.
2. **Network**: DUSt3R on (mapping frame m, query) — view 1 is the mapping
   frame, so the query's point map ``Q`` comes out in camera m's frame —
   and, for ``scale="pair"``, on (m, p) in the same batch, where p is m's
   best partner from the teacher's pair ranking (known poses only, chosen
   when the baseline is built).
3. **Scale** (metres per network unit of the (m, query) prediction):

   * ``pair`` (default; needs only known poses, like the teacher): the (m, p)
     prediction is aligned to the known relative pose exactly as the teacher
     aligns a pair (:func:`slocal.teach.dust3r.align.align_pair`), giving
     ``s_mp``. Both predictions contain view m's own point map in camera m's
     frame; the median ratio of their point distances over pixels confident
     in both converts: ``s = s_mp * median(|M_mp| / |M_mq|)``.
   * ``depth``: ``s = median(depth_m / M_mq_z)`` with m's registered depth
     (scenes with depth only).

   If the scale cannot be found (pair not aligned, too few points) the query
   fails (reported as a failed localization, never a guess).
4. **Pose**: the query's confident pixels (processed-camera coordinates) and
   their world points ``world_from_cam_m * (s * Q)`` go to PnP-RANSAC
   (:func:`slocal.localize.solve_pnp`) with the query's processed camera.

Without a checkpoint the network is the ViT-Large/512 DPT architecture with
random weights (``timing_only``): the timings are real, the poses are not
(when the random prediction gives no scale, PnP runs with scale 1 so that its
cost is still timed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np
import torch
from pydantic import Field

from slocal.config import config_dataclass
from slocal.data.scene import Frame, Scene
from slocal.device import resolve_device
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera, pixel_centers
from slocal.geometry.pnp import PnpConfig, PnpResult, solve_pnp
from slocal.geometry.pose import transform_points
from slocal.io import read_image
from slocal.progress import progress_bar
from slocal.teach.dust3r import Dust3rConfig, Dust3rNet, Dust3rRunner, load_dust3r
from slocal.teach.dust3r.align import PairSettings, align_pair
from slocal.teach.dust3r.checkpoint import checkpoint_help
from slocal.teach.dust3r.preprocess import preprocess_image
from slocal.teach.dust3r.teacher import AMP_MODES, PairView, Predictor, prepare_view
from slocal.teach.pairs import rank_partners

log = logging.getLogger(__name__)

SCALES = ("pair", "depth")


@config_dataclass
class Dust3rBaselineConfig(PairSettings):
    """Settings of the DUSt3R bench baseline; pair ranking and alignment as in ``PairSettings``.

    Attributes:
        image_size: network input size (512 for the 512 checkpoints).
        amp: autocast precision on CUDA.
        scale: ``pair`` (a second mapping frame and the known poses) or ``depth`` (m's depth image).
        thumb_size: (width, height) of the retrieval thumbnails.
        max_points: at most this many correspondences go to PnP (evenly subsampled).
        min_scale_points: fewest pixels a scale ratio may rest on.
        warmup: run the network once when building (keeps CUDA start-up out of the timings).
        pnp: RANSAC settings.
    """

    image_size: Annotated[int, Field(ge=16, multiple_of=16)] = 512
    amp: Literal[AMP_MODES] = "bf16"
    scale: Literal[SCALES] = "pair"
    thumb_size: tuple[int, int] = (32, 24)
    max_points: int = 5000
    min_scale_points: int = 50
    warmup: bool = True
    pnp: PnpConfig = field(default_factory=PnpConfig)


def thumbnail(rgb_HW3: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Zero-mean, unit-norm grey thumbnail (flattened float32) for retrieval."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb_HW3), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32).reshape(-1)
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return small / norm if norm > 0 else small


def _file_mb(paths: Sequence[Path]) -> float:
    return sum(Path(p).stat().st_size for p in paths if Path(p).is_file()) / 2**20


class Dust3rBaseline:
    """Localize queries with DUSt3R against retrieved mapping images (see the module docstring).

    Build with :meth:`build`; the constructor takes a ready predictor (tests inject an oracle).

    Attributes:
        timing_only: random weights; the poses mean nothing.
        timing_note: why accuracy is not reported (timing-only rows).
        map_mb: what the method stores: the checkpoint plus the mapping images (and depth images
            for ``scale="depth"``), MiB.
    """

    def __init__(
        self,
        scene: Scene,
        predictor: Predictor,
        config: Dust3rBaselineConfig = Dust3rBaselineConfig(),
        timing_only: bool = False,
        network_mb: float = 0.0,
    ):
        self.scene = scene
        self.config = config
        self.timing_only = timing_only
        self.timing_note = "random ViT-L/512 DPT weights (no checkpoint given): timings only" if timing_only else ""
        self._predict = predictor
        frames = scene.mapping
        if not frames:
            raise SlocalError(f"scene {scene.id} has no mapping frames", scene.root)
        if config.scale == "depth" and not scene.has_depth:
            raise SlocalError("the dust3r baseline with scale='depth' needs depth for every mapping frame", scene.root)
        self.partner: list[int | None] = [None] * len(frames)
        if config.scale == "pair":
            for i, ranked in enumerate(rank_partners(frames, config)):
                self.partner[i] = ranked[0][0] if ranked else None
            if all(p is None for p in self.partner):
                raise SlocalError(
                    "no mapping frame has a partner for the DUSt3R scale (baselines/overlap too small)", scene.root
                )
        self.thumbs = np.stack(
            [
                thumbnail(read_image(f.image_path), config.thumb_size)
                for f in progress_bar(frames, "dust3r baseline: thumbnails")
            ]
        )
        self.retrievable = np.array([config.scale == "depth" or p is not None for p in self.partner])
        stored = [f.image_path for f in frames]
        if config.scale == "depth":
            stored += [f.depth_path for f in frames]
        self.map_mb = network_mb + _file_mb(stored) + self.thumbs.nbytes / 2**20

    @classmethod
    def build(
        cls,
        scene: Scene,
        checkpoint: str | Path | None,
        device: str | None = None,
        config: Dust3rBaselineConfig = Dust3rBaselineConfig(),
        random_config: Dust3rConfig | None = None,
    ) -> Dust3rBaseline:
        """Load the network (or build a random ViT-L/512 DPT one) and prepare retrieval.

        Args:
            scene: the scene; only its mapping frames are used.
            checkpoint: DUSt3R checkpoint; None: random weights, ``timing_only``.
            device: torch device (None: CUDA when available).
            config: settings.
            random_config: architecture for the random network (default
                ``Dust3rConfig.vitlarge_512_dpt()``; tests pass a tiny one).
        """
        device = resolve_device(device)
        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.exists():
                raise SlocalError(f"DUSt3R checkpoint not found; {checkpoint_help()}", path)
            net = load_dust3r(path, device=device)
            files = [path] if path.is_file() else [p for p in path.iterdir() if p.is_file()]
            network_mb = _file_mb(files)
        else:
            cfg = (random_config or Dust3rConfig.vitlarge_512_dpt()).natural()
            log.warning("dust3r baseline without a checkpoint: random %s-head weights, timings only", cfg.head_type)
            with torch.device(device):
                net = Dust3rNet(cfg).eval().requires_grad_(False)
            network_mb = sum(p.numel() * p.element_size() for p in net.parameters()) / 2**20
        runner = Dust3rRunner(net, device=device, batch_size=2, amp=config.amp)

        def predict(pairs: Sequence[tuple[PairView, PairView]]) -> list:
            return runner.run([(a.image, b.image) for a, b in pairs], progress=False)

        baseline = cls(scene, predict, config, timing_only=checkpoint is None, network_mb=network_mb)
        if checkpoint is None and random_config is not None:
            baseline.timing_note = "random weights of a custom architecture (no checkpoint given): timings only"
        if config.warmup:
            m = int(np.flatnonzero(baseline.retrievable)[0])
            view = prepare_view(m, scene.mapping[m], config.image_size)
            predict([(view, view)] * (2 if config.scale == "pair" else 1))  # the per-query batch size
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
        return baseline

    def retrieve(self, rgb_HW3: np.ndarray) -> int:
        """Index of the most similar retrievable mapping frame (image content only)."""
        sims = self.thumbs @ thumbnail(rgb_HW3, self.config.thumb_size)
        sims[~self.retrievable] = -np.inf
        return int(np.argmax(sims))

    def localize(self, rgb_HW3: np.ndarray, camera: Camera) -> tuple[PnpResult, dict[str, float]]:
        """Estimate the query's ``cam_from_world``.

        Returns:
            The PnP result (``success=False`` when the scale or the pose cannot be found)
            and timings in ms: retrieval, preprocess, network, scale, pnp.
        """
        c = self.config
        ms: dict[str, float] = {}
        start = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal start
            now = time.perf_counter()
            ms[name] = (now - start) * 1e3
            start = now

        m = self.retrieve(rgb_HW3)
        lap("retrieval")
        frame_m = self.scene.mapping[m]
        try:
            image_q, cam_q = preprocess_image(rgb_HW3, camera, size=c.image_size)
        except ValueError as exc:
            raise SlocalError(f"cannot prepare the query image for DUSt3R: {exc}") from exc
        query = PairView(-1, None, image_q, cam_q)
        view_m = prepare_view(m, frame_m, c.image_size)
        pairs = [(view_m, query)]
        p = self.partner[m]
        if c.scale == "pair":
            view_p = prepare_view(p, self.scene.mapping[p], c.image_size)
            pairs.append((view_m, view_p))
        lap("preprocess")
        preds = self._predict(pairs)
        lap("network")
        scale = self._scale(frame_m, view_m, pairs, preds)
        lap("scale")
        if scale is None and self.timing_only:
            # random weights rarely give an aligned pair; still time PnP on the (meaningless) points
            scale = 1.0
        if scale is None:
            ms["pnp"] = 0.0
            return PnpResult(None, False, 0, 0, None, 0.0), ms
        pred = preds[0]
        good = (pred.conf_2 >= c.min_conf).reshape(-1) & np.isfinite(pred.pts3d_2).all(-1).reshape(-1)
        idx = np.flatnonzero(good)
        if len(idx) > c.max_points:
            idx = idx[np.linspace(0, len(idx) - 1, c.max_points).round().astype(int)]
        uv = pixel_centers(cam_q.width, cam_q.height).reshape(-1, 2)[idx]
        xyz = transform_points(frame_m.world_from_cam, scale * pred.pts3d_2.reshape(-1, 3)[idx].astype(np.float64))
        result = solve_pnp(uv, xyz, cam_q, c.pnp)
        lap("pnp")
        return result, ms

    def _scale(self, frame_m: Frame, view_m: PairView, pairs, preds) -> float | None:
        """Metres per network unit of the (m, query) prediction, or None (logged)."""
        c = self.config
        mq = preds[0]
        if c.scale == "depth":
            depth = frame_m.depth_at(view_m.camera)
            z = mq.pts3d_1[..., 2].astype(np.float64)
            ok = (depth > 0) & (mq.conf_1 >= c.min_conf) & (z > 0)
            if ok.sum() < c.min_scale_points:
                log.debug("dust3r baseline: too few depth pixels for the scale of %s", frame_m.name)
                return None
            return float(np.median(depth[ok] / z[ok]))
        view_p = pairs[1][1]
        mp = preds[1]
        cam_m_from_cam_p = frame_m.cam_from_world @ view_p.frame.world_from_cam
        al = align_pair(mp.pts3d_2, mp.conf_2, view_p.camera, cam_m_from_cam_p, c)
        if al.status != "ok":
            log.debug("dust3r baseline: scale pair %s - %s %s", frame_m.name, view_p.frame.name, al.status)
            return None
        d_mq = np.linalg.norm(mq.pts3d_1.astype(np.float64), axis=-1)
        d_mp = np.linalg.norm(mp.pts3d_1.astype(np.float64), axis=-1)
        ok = (mq.conf_1 >= c.min_conf) & (mp.conf_1 >= c.min_conf) & np.isfinite(d_mq) & np.isfinite(d_mp)
        ok &= (d_mq > 0) & (d_mp > 0)
        if ok.sum() < c.min_scale_points:
            return None
        return float(al.scale * np.median(d_mp[ok] / d_mq[ok]))
