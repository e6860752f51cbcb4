"""Localizing in a home of many rooms: which room, then where in it.

A home is a folder of scenes (``apt1`` holding ``apt1/kitchen``, ``apt1/living``, ...; see
``slocal.data.find_rooms``), each room with its own student. ``RoomLocalizer`` places a query
in the room whose student explains it best: it checks candidate rooms with a short PnP-RANSAC
on each room's predictions, keeps the room with the most inliers, and solves the pose there
with that room's student's ordinary RANSAC (``student_pnp``), so a query placed in the right room gets
the pose a single-room localizer would give it. How sure the choice is, is the ratio of the
best room's check inliers to the runner-up's (``room_ratio``).

Why the time per query does not grow with the rooms as N single-room localizers would:

- students that run a head on the same frozen pretrained encoder (``ace``/``hybrid``, without
  ``tune_encoder``, at the same input size) share one encoder pass per query (``SharedEncoder``);
  only their small heads run per room;
- on CPU the shared encoder and every room's head run through onnxruntime, as whole students do
  (a head of a few linear layers run eagerly by torch on 2 threads took longer than the encoder);
- the check is a short RANSAC on a subset of the matches, a fraction of the full RANSAC, which
  runs once, in the chosen room; for heads that predict each cell from its own features alone
  (``ace``), the heads of the checked rooms run only on the check's cells, and the chosen room's
  head then on the other cells;
- with more rooms than ``candidates``, rooms are first ranked by a global descriptor of the
  shared encoder's features (mean-pooled, L2-normalised) against descriptors of each room's
  mapping images, and only the top ``candidates`` are checked, unless the check is unsure
  (best / runner-up inliers below ``sure_ratio``): then every room is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slocal.data import find_rooms
from slocal.data.scene import Scene
from slocal.distill.config import DEFAULT_STUDENT
from slocal.distill.config_files import default_model_path, student_folder
from slocal.distill.encoder import OrtModule
from slocal.distill.model_file import StudentOutput
from slocal.distill.students import AceStudent
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera, pixel_centers
from slocal.geometry.pnp import DENSE_PNP, PnpConfig, PnpResult, solve_pnp
from slocal.io import read_image
from slocal.localize.localizer import (
    Localization,
    ScenePredictor,
    check_rgb,
    correspondences,
    fit_camera_to_image,
    load_model,
    student_pnp,
)

log = logging.getLogger(__name__)

# The room check: the students' RANSAC with fewer hypotheses, on CHECK_POINTS evenly spaced
# matches and without poselib's second pass over all of them (the part that costs: ~1 ms in a wrong
# room, ~2 ms in the right one, against 5-10 ms for the full RANSAC, probed on the procedural home).
# In the right room a few dozen draws find a pose that most matches agree with; in a wrong one no
# number of draws does. The chosen room's pose is then the full RANSAC on all matches (``student_pnp``),
# the one a single-room localizer computes.
ROOM_CHECK = replace(DENSE_PNP, max_iterations=100, min_iterations=20, ransac_points=None)
CHECK_POINTS = 320
# Rooms checked before any is accepted, the best / runner-up inlier ratio that makes the
# choice sure, and how many mapping images per room give its descriptors.
CANDIDATES = 2
SURE_RATIO = 2.0
DESCRIPTOR_FRAMES = 32


@dataclass(frozen=True)
class Room:
    """One room of a home: its scene id and its student file."""

    scene_id: str
    model: Path


@dataclass(frozen=True, eq=False)
class RoomLocalization(Localization):
    """A ``Localization`` with the room it was placed in.

    Attributes:
        room: the chosen room (the best checked one, also when its pose failed); None without rooms.
        room_ratio: check inliers of the chosen room / those of the runner-up (at least 1 in the
            denominator); None when only one room was checked. 1 means a tie, 10 a clear choice.
        room_inliers: check inliers (of ``CHECK_POINTS`` matches) of every room checked for this
            query, best first.
    """

    room: str | None = None
    room_ratio: float | None = None
    room_inliers: dict[str, int] = field(default_factory=dict)


def rooms_in_runs(runs_root: str | Path, scene_id: str, student: str = DEFAULT_STUDENT) -> list[str]:
    """Rooms of ``scene_id`` that have a ``student`` under the runs folder (when no data root holds the home)."""
    home = Path(runs_root) / scene_id
    if not home.is_dir():
        return []
    folder = student_folder(student)
    found = []
    for model in home.glob(f"**/students/{folder}/model.pt"):
        room = model.parent.parent.parent.relative_to(Path(runs_root)).as_posix()
        if room != scene_id.rstrip("/"):
            found.append(room)
    return sorted(found)


def home_rooms(
    data_root: str | Path, runs_root: str | Path, scene_id: str, student: str = DEFAULT_STUDENT
) -> list[Room]:
    """The rooms of the home ``scene_id`` and their student files.

    The rooms are the scenes in ``data_root / scene_id`` (``slocal.data.find_rooms``); without that
    folder, the rooms under ``runs_root / scene_id`` that have a student.

    Returns:
        The rooms, sorted; ``[]`` when ``scene_id`` is not a folder of rooms in either place.

    Raises:
        SlocalError: some room has no student: one line naming each such room and the
            ``slocal distill`` command that makes its student.
    """
    if (Path(data_root) / scene_id).is_dir():
        names = find_rooms(data_root, scene_id)
    else:
        names = rooms_in_runs(runs_root, scene_id, student)
    rooms = [Room(name, default_model_path(runs_root, name, student)) for name in names]
    missing = [r for r in rooms if not r.model.is_file()]
    if missing:
        todo = "; ".join(
            f"room {r.scene_id}: run `slocal distill --scene {r.scene_id} --student {student}`" for r in missing
        )
        raise SlocalError(
            f"{len(missing)} of the {len(rooms)} rooms of {scene_id} have no {student} student ({todo})",
            missing[0].model,
        )
    return rooms


class SharedEncoder:
    """The frozen pretrained encoder of rooms whose students put a head on it: one pass per query.

    Args:
        student: one of the rooms' students (``slocal.distill.model_file.Student``); its encoder,
            input size and normalisation serve every room of the group (``sharing_key``).

    Attributes:
        calls: encoder passes so far (one per localized query).
    """

    def __init__(self, student):
        self.student = student
        self.encoder = student.module.encoder
        self.device = student.device
        self.calls = 0
        # On CPU the encoder runs through onnxruntime like the students' own sessions (a fixed-shape
        # session per input size, made now rather than on the first query), but with sleeping
        # threads: each onnxruntime session has its own thread pool, and threads left spinning by the
        # encoder's session fought the heads' sessions that run right after it for the 2 cores (on
        # the procedural home, under load, 2 rooms took 190 ms a query with spinning, 35-50 without).
        self._ort = None
        if self.device.type == "cpu":
            self._ort = OrtModule(self.encoder, ["features"], spinning=False)
            width, height = student.image_size
            self._ort.session((1, 3, height, width))

    @staticmethod
    def sharing_key(student) -> tuple | None:
        """What must agree for two students to share an encoder pass; None for a student that cannot.

        End-to-end students, ``.onnx`` students and those that fine-tune encoder stages per scene
        (``tune_encoder``) run whole, each on its own.
        """
        module = getattr(student, "module", None)
        encoder = getattr(module, "encoder", None)
        config = getattr(student, "config", None)
        if encoder is None or config is None or not hasattr(module, "forward_features") or config.tune_encoder:
            return None
        return (
            encoder.spec.name,
            str(encoder.weights_file),
            tuple(encoder.level_strides),
            tuple(student.image_size),
            tuple(config.mean),
            tuple(config.std),
            str(student.device),
        )

    def __call__(self, rgb_HW3: np.ndarray, camera: Camera) -> tuple[torch.Tensor, Camera]:
        """Fused encoder features ``feat_1Chw`` of an image, and the camera as the network saw it."""
        rgb, net_camera = self.student.prepare(rgb_HW3, camera)
        x = torch.from_numpy(self.student.preprocess_network_input(rgb))
        self.calls += 1
        if self._ort is not None:
            return self._ort(x)[0], net_camera
        with torch.inference_mode():
            return self.encoder(x.to(self.device)).float(), net_camera


class _Head(nn.Module):
    """A student's head alone, for export: encoder features -> coordinates relative to the scene centre."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, feat_BChw: torch.Tensor) -> torch.Tensor:
        return self.module.forward_features(feat_BChw)


class RoomHead:
    """One room's head on shared encoder features: the same prediction as ``student.predict`` on the image.

    Attributes:
        per_cell: the head predicts each cell from that cell's features alone (an ``ace`` head
            without a confidence output), so ``cells`` can run it on some cells only.

    On CPU it runs through onnxruntime (``OrtModule``, its session made now for the student's input
    size), like the student's own fused session; elsewhere through torch. Through torch on CPU, on 2
    threads under load, a default head took 42 ms and the tests' tiny one 47 ms (0.2 ms on one thread):
    the thread pool waking, not the arithmetic.
    """

    def __init__(self, student, check_cells: int | None = None):
        self.student = student
        self.per_cell = isinstance(student.module, AceStudent) and not student.config.uncertainty
        self._ort = None
        if student.device.type == "cpu":
            channels = student.module.buffer_channels
            # Sleeping threads, as the shared encoder's (see ``SharedEncoder``).
            self._ort = OrtModule(_Head(student.module), ["coords"], spinning=False, in_channels=channels)
            width, height = student.image_size
            self._ort.session((1, channels, height // student.stride, width // student.stride))
            if self.per_cell and check_cells:
                # The room check's cells, and the rest of the grid (``rest``).
                cells = (height // student.stride) * (width // student.stride)
                self._ort.session((1, channels, 1, min(check_cells, cells)))
                if cells > check_cells:
                    self._ort.session((1, channels, 1, cells - check_cells))

    def _run(self, feat_1Chw: torch.Tensor) -> torch.Tensor:
        student = self.student
        if self._ort is not None:
            return self._ort(feat_1Chw)[0]
        bf16 = student.precision == "bf16" and student.device.type != "cpu"  # on CPU students run fp32
        with torch.inference_mode(), torch.autocast(student.device.type, dtype=torch.bfloat16, enabled=bf16):
            return student.module.forward_features(feat_1Chw.to(student.device))

    def cells(self, feat_1Chw: torch.Tensor, idx_K: np.ndarray) -> np.ndarray:
        """(K, 3) float32 world coordinates of the cells ``idx_K`` (row-major indices of the h x w grid).

        Only for a ``per_cell`` head: the cells' features are laid out as a 1 x K image.
        """
        if not self.per_cell:
            raise ValueError("this head looks beyond each cell: run it on the whole feature map")
        C = feat_1Chw.shape[1]
        if self._ort is not None:
            # The gather in numpy, not torch: a torch op this size wakes torch's thread pool, which
            # on 2 loaded cores cost more than the head (heads 12 ms a query at 1 thread, 31 at 2).
            feat = feat_1Chw.numpy().reshape(C, -1)
            sub = np.ascontiguousarray(feat[:, idx_K]).reshape(1, C, 1, len(idx_K))
            out = self._ort(torch.from_numpy(sub))[0].numpy()
            return out[0, :3, 0, :].T + np.asarray(self.student.centre, np.float32).reshape(1, 3)
        sub = feat_1Chw.reshape(1, C, -1)[:, :, torch.as_tensor(idx_K)].reshape(1, C, 1, len(idx_K))
        out = self._run(sub)
        centre = torch.as_tensor(self.student.centre, dtype=torch.float32, device=out.device).view(3, 1)
        return (out[0, :3, 0, :].float() + centre).T.cpu().numpy()

    def rest(self, feat_1Chw: torch.Tensor, net_camera: Camera, idx_K: np.ndarray, xyz_K3: np.ndarray) -> StudentOutput:
        """The whole prediction, given ``cells`` at ``idx_K`` already: the head runs on the other cells only."""
        start = time.perf_counter()
        h, w = feat_1Chw.shape[2:]
        others = np.setdiff1d(np.arange(h * w), idx_K)
        coords = np.empty((h * w, 3), np.float32)
        coords[idx_K] = xyz_K3
        if len(others):
            coords[others] = self.cells(feat_1Chw, others)
        ms = (time.perf_counter() - start) * 1e3
        return StudentOutput(coords.reshape(h, w, 3), None, net_camera, self.student.stride, ms)

    def __call__(self, feat_1Chw: torch.Tensor, net_camera: Camera) -> StudentOutput:
        start = time.perf_counter()
        student = self.student
        out = self._run(feat_1Chw)
        centre = torch.as_tensor(student.centre, dtype=torch.float32, device=out.device).view(1, 3, 1, 1)
        coords = (out[:, :3].float() + centre)[0].permute(1, 2, 0).cpu().numpy()
        conf = torch.exp(-out[0, 3]).float().cpu().numpy() if student.config.uncertainty else None
        ms = (time.perf_counter() - start) * 1e3
        return StudentOutput(np.ascontiguousarray(coords, dtype=np.float32), conf, net_camera, student.stride, ms)


def global_descriptor(feat_1Chw: torch.Tensor) -> np.ndarray:
    """(C,) float32: the encoder features averaged over the image, L2-normalised."""
    mean = feat_1Chw.float().mean(dim=(0, 2, 3)).cpu().numpy().astype(np.float32)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


@dataclass(eq=False)
class _Check:
    output: StudentOutput | None  # None: the head ran on the check's cells only, ``idx`` and ``xyz``
    result: PnpResult
    idx: np.ndarray | None = None
    xyz: np.ndarray | None = None


class RoomLocalizer:
    """Place a query in one of several rooms and solve its pose there.

    Args:
        models: room scene id -> its loaded student (``load_model``), in a fixed order.
        pnp_config: RANSAC of the final pose, in the chosen room (default: that room's student's,
            ``slocal.localize.localizer.student_pnp``, with ``ransac_points`` and ``ransac_threshold_px``).
        check_config: RANSAC of the room check (default: ``ROOM_CHECK``).
        candidates: rooms checked first (>= 2); the rest only when the check is unsure. Used only
            with descriptors of every room (``add_descriptors``); without them every room is checked.
        sure_ratio: best / runner-up check inliers at or above which the choice stands.
        ransac_points, ransac_threshold_px: overrides of every room student's own RANSAC settings
            (``student_pnp``) when no ``pnp_config`` is given.
    """

    def __init__(
        self,
        models: Mapping[str, ScenePredictor],
        pnp_config: PnpConfig | None = None,
        check_config: PnpConfig = ROOM_CHECK,
        candidates: int = CANDIDATES,
        sure_ratio: float = SURE_RATIO,
        ransac_points: int | None = None,
        ransac_threshold_px: float | None = None,
    ):
        if not models:
            raise SlocalError("no rooms to localize in")
        if candidates < 2:
            raise ValueError(f"candidates must be >= 2 (the choice is judged against a runner-up), got {candidates}")
        self.models = dict(models)
        self.pnp_config = pnp_config
        self.ransac_points = ransac_points
        self.ransac_threshold_px = ransac_threshold_px
        self.check_config = check_config
        self.candidates = candidates
        self.sure_ratio = sure_ratio
        self.encoders: dict[tuple, SharedEncoder] = {}
        self._encoder_of: dict[str, tuple] = {}
        self._heads: dict[str, RoomHead] = {}
        groups: dict[tuple, list[str]] = {}
        for room, model in self.models.items():
            key = SharedEncoder.sharing_key(model)
            if key is not None:
                groups.setdefault(key, []).append(room)
        for key, rooms in groups.items():
            # A room alone on its encoder runs whole: its own fused session is faster than encoder + head.
            if len(rooms) > 1:
                self.encoders[key] = SharedEncoder(self.models[rooms[0]])
                self._encoder_of.update(dict.fromkeys(rooms, key))
                self._heads.update({room: RoomHead(self.models[room], CHECK_POINTS) for room in rooms})
        self.descriptors: dict[str, np.ndarray] = {}

    def pnp_for(self, room: str) -> PnpConfig:
        """The RANSAC settings of a query's final pose in ``room``."""
        if self.pnp_config is not None:
            return self.pnp_config
        return student_pnp(self.models[room], self.ransac_points, self.ransac_threshold_px)

    @property
    def rooms(self) -> list[str]:
        return list(self.models)

    @property
    def reference_camera(self) -> Camera:
        """The camera every room was mapped with; refused when the rooms disagree (give the query's intrinsics)."""
        cameras = {room: getattr(m, "reference_camera", None) for room, m in self.models.items()}
        first = next(iter(cameras.values()))
        if first is None or any(c != first for c in cameras.values()):
            listed = ", ".join(f"{r}: {c.to_dict() if c is not None else 'none'}" for r, c in cameras.items())
            raise SlocalError(f"the rooms were mapped with different cameras ({listed}); pass --intrinsics")
        return first

    def add_descriptors(self, room: str, images: Sequence[tuple[np.ndarray, Camera]]) -> None:
        """Describe ``room`` by some of its mapping images (RGB uint8 and camera), for ranking rooms."""
        key = self._encoder_of.get(room)
        if key is None:
            raise SlocalError(f"room {room}'s student shares no encoder with another room: it has no descriptor")
        encoder = self.encoders[key]
        rows = [global_descriptor(encoder(rgb, camera)[0]) for rgb, camera in images]
        if not rows:
            raise SlocalError(f"room {room}: no mapping images to describe it")
        self.descriptors[room] = np.stack(rows)

    def describe_from_scenes(self, scenes: Mapping[str, Scene], frames: int = DESCRIPTOR_FRAMES) -> None:
        """``add_descriptors`` from up to ``frames`` evenly spaced mapping images of each room's scene."""
        for room, scene in scenes.items():
            chosen = scene.mapping
            if len(chosen) > frames:
                chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, frames).round().astype(int)]
            self.add_descriptors(room, [(read_image(f.image_path), f.camera) for f in chosen])

    def _ranked(self, features: Mapping[tuple, tuple[torch.Tensor, Camera]]) -> list[str] | None:
        """Rooms by descending similarity of the query to their mapping images; None when it need not or cannot rank."""
        if len(self.models) <= self.candidates or set(self.descriptors) != set(self.models):
            return None
        query = {key: global_descriptor(feat) for key, (feat, _) in features.items()}
        score = {room: float(np.max(rows @ query[self._encoder_of[room]])) for room, rows in self.descriptors.items()}
        return sorted(self.models, key=lambda r: -score[r])

    def localize(self, rgb_HW3: np.ndarray, camera: Camera, image: str | Path | None = None) -> RoomLocalization:
        """Choose the room of an image and estimate its pose there.

        Args:
            rgb_HW3: uint8 RGB image.
            camera: its intrinsics; rescaled when the image has another size but the same aspect.
            image: a name for error messages.

        Returns:
            A ``RoomLocalization``: the room, its pose (``success=False`` when too few inliers even
            in the best room), how sure the room is, and ``ms`` per stage: ``encoder`` (shared
            passes), ``heads`` (per-room heads and whole students), ``rank``, ``check``, ``network``
            (encoder + heads), ``ransac`` (check + final) and ``total``.
        """
        start = time.perf_counter()
        check_rgb(rgb_HW3, image)
        camera = fit_camera_to_image(camera, rgb_HW3.shape[1], rgb_HW3.shape[0], image)
        features: dict[tuple, tuple[torch.Tensor, Camera]] = {}
        for key, encoder in self.encoders.items():
            features[key] = encoder(rgb_HW3, camera)
        t_encoder = time.perf_counter()
        ranked = self._ranked(features)
        order = ranked or list(self.models)
        t_rank = time.perf_counter()
        ms = {"heads": 0.0, "check": 0.0}
        checks: dict[str, _Check] = {}

        def check(room: str) -> None:
            t0 = time.perf_counter()
            model = self.models[room]
            key = self._encoder_of.get(room)
            head = self._heads.get(room)
            if head is not None and head.per_cell:
                # The cells correspondences(max_points=CHECK_POINTS) would take: evenly spaced.
                feat, net_camera = features[key]
                uv_all = pixel_centers(net_camera.width, net_camera.height, model.stride).reshape(-1, 2)
                idx = np.linspace(0, len(uv_all) - 1, min(CHECK_POINTS, len(uv_all))).round().astype(np.int64)
                xyz = head.cells(feat, idx)
                t1 = time.perf_counter()
                keep = np.isfinite(xyz).all(1)
                result = solve_pnp(uv_all[idx][keep], xyz[keep].astype(np.float64), net_camera, self.check_config)
                checks[room] = _Check(None, result, idx, xyz)
            else:
                output = model.predict(rgb_HW3, camera) if head is None else head(*features[key])
                t1 = time.perf_counter()
                uv, xyz = correspondences(output, max_points=CHECK_POINTS)
                checks[room] = _Check(output, solve_pnp(uv, xyz, output.camera, self.check_config))
            ms["heads"] += (t1 - t0) * 1e3
            ms["check"] += (time.perf_counter() - t1) * 1e3

        first = order[: self.candidates] if ranked else order
        for room in first:
            check(room)
        if ranked and not self._sure(checks):
            for room in order[self.candidates :]:
                check(room)
        by_inliers = sorted(checks, key=lambda r: -checks[r].result.num_inliers)  # stable: ties keep rank order
        best = checks[by_inliers[0]]
        output = best.output
        if output is None:
            # The chosen room's head on the cells the check did not need: its whole prediction.
            t0 = time.perf_counter()
            feat, net_camera = features[self._encoder_of[by_inliers[0]]]
            output = self._heads[by_inliers[0]].rest(feat, net_camera, best.idx, best.xyz)
            ms["heads"] += (time.perf_counter() - t0) * 1e3
        t_final = time.perf_counter()
        result = solve_pnp(*correspondences(output), output.camera, self.pnp_for(by_inliers[0]))
        end = time.perf_counter()
        inliers = {r: checks[r].result.num_inliers for r in by_inliers}
        ratio = None
        if len(by_inliers) > 1:
            ratio = inliers[by_inliers[0]] / max(inliers[by_inliers[1]], 1)
        encoder_ms = (t_encoder - start) * 1e3
        ms = {
            "encoder": encoder_ms,
            "rank": (t_rank - t_encoder) * 1e3,
            **ms,
            "network": encoder_ms + ms["heads"],
            "ransac": ms["check"] + (end - t_final) * 1e3,
            "total": (end - start) * 1e3,
        }
        return RoomLocalization(
            result.cam_from_world if result.success else None,
            result.success,
            result.num_inliers,
            result.num_correspondences,
            ms,
            room=by_inliers[0],
            room_ratio=ratio,
            room_inliers=inliers,
        )

    def _sure(self, checks: Mapping[str, _Check]) -> bool:
        counts = sorted((c.result.num_inliers for c in checks.values()), reverse=True)
        if not counts or counts[0] < self.check_config.min_inliers:
            return False
        return len(counts) < 2 or counts[0] >= self.sure_ratio * max(counts[1], 1)

    def localize_image(self, path: str | Path, camera: Camera) -> RoomLocalization:
        """Read an image file and localize it; ``ms`` gets ``load`` (decoding), included in ``total``."""
        start = time.perf_counter()
        rgb = read_image(path)
        load_ms = (time.perf_counter() - start) * 1e3
        loc = self.localize(rgb, camera, image=path)
        return replace(loc, ms={"load": load_ms, **loc.ms, "total": loc.ms["total"] + load_ms})


def load_rooms(
    rooms: Sequence[Room],
    device: str = "cpu",
    threads: int | None = None,
    expect_fingerprints: Mapping[str, str] | None = None,
    **options,
) -> RoomLocalizer:
    """Load every room's student (each refused if trained for another scene) into a ``RoomLocalizer``.

    Args:
        rooms: the rooms (``home_rooms``).
        device, threads: as ``load_model``.
        expect_fingerprints: room -> scene fingerprint its student must have been trained on.
        options: ``RoomLocalizer`` settings (``pnp_config``, ``check_config``, ``candidates``, ``sure_ratio``,
            ``ransac_points``, ``ransac_threshold_px``).
    """
    fingerprints = expect_fingerprints or {}
    models = {
        r.scene_id: load_model(
            r.model,
            device=device,
            expect_scene=r.scene_id,
            expect_fingerprint=fingerprints.get(r.scene_id),
            threads=threads,
        )
        for r in rooms
    }
    return RoomLocalizer(models, **options)
