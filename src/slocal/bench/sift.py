"""The ``sift`` baseline: structure-based localization against the SfM teacher's SIFT map.

Built once per scene (``SiftLocalizer.build``) from ``build_sfm_map``: SIFT on
the mapping images, pose-neighbour matching and triangulation with the known
poses fixed. Per query:

1. features: SIFT on the query (same extractor and resolution as the map).
2. matching: retrieval of the ``num_retrieved`` most similar mapping images
   with a bag of visual words (spherical k-means vocabulary of the mapping
   descriptors, sqrt-tf x idf, cosine similarity) -- the query's pose is never
   used; then mutual nearest-neighbour + ratio-test matching of the query
   against each retrieved image's keypoints that have a 3D point.
3. ransac: ``slocal.geometry.pnp.solve_pnp`` on the 2D-3D matches.

Kept hand-written, on purpose: the retrieval (``slocal.capture.retrieval``, shared
with ``slocal map``), because pycolmap's vocabulary-tree retrieval (``VisualIndex``,
``match_vocabtree``) needs a trained vocabulary file that cannot be downloaded
here, while ours is trained on the mapping descriptors in seconds; and the
matcher (``match_descriptors``), because pycolmap's ``FeatureMatcher`` matches
one image pair of ``FeatureDescriptors`` objects per call, where ours is one
BLAS product of the query against the map's unit descriptors already in memory,
and swapping it would need the redkitchen bench rerun to show it is at least as
good (kornia's ``match_smnn`` does the same as ours but would add a dependency
for ~15 lines).

The cache ``<runs>/<scene>/sift/<key>/`` holds ``map.npz`` (everything a query
needs: per-image descriptors of triangulated keypoints, their 3D points, the
vocabulary and the image vectors), ``index.json`` (written last) and ``work/``
(the COLMAP model; the database is deleted once the map is exported).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slocal.capture.retrieval import bow_index, bow_vector, descriptors_to_float, nearest_word
from slocal.data.scene import Scene
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera
from slocal.geometry.pnp import PnpConfig, PnpResult, solve_pnp
from slocal.io import atomic_path, read_json, write_json
from slocal.progress import progress_bar
from slocal.runs import sift_map_dir
from slocal.teach.features import SiftExtractor
from slocal.teach.sfm import SfmTeacherConfig, build_sfm_map, kept_observations

# pycolmap is imported where the map is built: loading a cached map needs only numpy.
log = logging.getLogger(__name__)

SIFT_MAP_VERSION = 1


@dataclass(frozen=True)
class SiftConfig:
    """Settings of the SIFT baseline.

    Attributes:
        sfm: the SfM map settings (SIFT resolution and count, pairs, filters).
        vocab_size: visual words of the retrieval vocabulary.
        vocab_samples: mapping descriptors the vocabulary is trained on (random subset).
        vocab_iterations: spherical k-means iterations.
        num_retrieved: mapping images matched against each query.
        max_ratio: Lowe's ratio test on descriptor distances.
        pnp: RANSAC settings.
        seed: seed of the vocabulary training.
    """

    sfm: SfmTeacherConfig = SfmTeacherConfig()
    vocab_size: int = 512
    vocab_samples: int = 100_000
    vocab_iterations: int = 10
    num_retrieved: int = 10
    max_ratio: float = 0.8
    pnp: PnpConfig = PnpConfig()
    seed: int = 0

    def map_settings(self) -> dict:
        """Every setting that changes the cached map."""
        return {
            "sfm": self.sfm.map_settings(),
            "vocab_size": self.vocab_size,
            "vocab_samples": self.vocab_samples,
            "vocab_iterations": self.vocab_iterations,
            "seed": self.seed,
            "version": SIFT_MAP_VERSION,
        }


# ---------------------------------------------------------------------------
# Matching


def match_descriptors(q_NC: np.ndarray, d_MC: np.ndarray, max_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours passing the ratio test (unit descriptors).

    Returns:
        (query indices, map indices), int64 arrays of equal length.
    """
    if len(q_NC) == 0 or len(d_MC) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sim = q_NC @ d_MC.T
    best = np.argmax(sim, axis=1)
    top2 = np.partition(sim, -2, axis=1)[:, -2:]
    d1 = np.sqrt(np.maximum(2.0 - 2.0 * top2[:, 1], 0.0))
    d2 = np.sqrt(np.maximum(2.0 - 2.0 * top2[:, 0], 0.0))
    rows = np.flatnonzero(d1 < max_ratio * d2)
    # The mutual check only needs the columns the candidates point at (a full
    # column-wise argmax costs as much as the product itself).
    cols, inverse = np.unique(best[rows], return_inverse=True)
    mutual = np.argmax(sim[:, cols], axis=0)[inverse] == rows
    return rows[mutual], best[rows[mutual]]


# ---------------------------------------------------------------------------
# The localizer


def _cache_key(scene: Scene, config: SiftConfig) -> str:
    blob = json.dumps({"settings": config.map_settings(), "scene": scene.fingerprint}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def sift_dir(runs_root: str | Path, scene: Scene, config: SiftConfig) -> Path:
    return sift_map_dir(runs_root, scene.id, _cache_key(scene, config))


def _export_map(scene: Scene, config: SiftConfig, folder: Path) -> dict:
    """Build the SfM map in ``folder/work`` and write ``folder/map.npz``; returns stats."""
    import pycolmap

    sfm_map = build_sfm_map(scene, config.sfm, folder / "work")
    observations = kept_observations(sfm_map, config.sfm)
    image_ids = sorted(sfm_map.image_ids.values())

    point_index: dict[int, int] = {}
    points: list[np.ndarray] = []
    descs, point_idx, offsets, all_desc = [], [], [0], []
    db = pycolmap.Database.open(sfm_map.database_path)
    try:
        for image_id in progress_bar(image_ids, "sift map: export"):
            desc = np.asarray(db.read_descriptors(image_id).data, np.uint8).reshape(-1, 128)
            all_desc.append(desc)
            obs = observations.get(image_id)
            if obs is None:
                offsets.append(offsets[-1])
                continue
            idx = np.empty(len(obs), np.int64)
            for k, (pid, xyz) in enumerate(zip(obs.point3D_id.tolist(), obs.xyz_N3)):
                if pid not in point_index:
                    point_index[pid] = len(points)
                    points.append(xyz)
                idx[k] = point_index[pid]
            descs.append(desc[obs.point2D_idx])
            point_idx.append(idx)
            offsets.append(offsets[-1] + len(obs))
    finally:
        db.close()
    if not points:
        raise SlocalError(f"scene {scene.id}: the SIFT map has no 3D point after filtering", scene.root)

    n_desc = sum(len(d) for d in all_desc)
    log.info(
        "sift map %s: training a %d-word vocabulary on %d descriptors",
        scene.id,
        config.vocab_size,
        min(config.vocab_samples, n_desc),
    )
    words, idf, bow = bow_index(all_desc, config.vocab_size, config.vocab_iterations, config.vocab_samples, config.seed)

    with atomic_path(folder / "map.npz") as tmp:
        np.savez(
            tmp,
            desc_M128=np.concatenate(descs) if descs else np.zeros((0, 128), np.uint8),
            point_idx_M=np.concatenate(point_idx).astype(np.int32) if point_idx else np.zeros(0, np.int32),
            offsets=np.asarray(offsets, np.int64),
            points_P3=np.asarray(points, np.float64),
            words_K128=words,
            idf_K=idf,
            bow_IK=bow,
            image_names=np.asarray([f.name for f in sfm_map.frames]),
        )
    sfm_map.database_path.unlink()
    return {
        **sfm_map.stats,
        "map_points": len(points),
        "map_observations": int(offsets[-1]),
        "vocab_size": int(len(words)),
    }


class SiftLocalizer:
    """SIFT + SfM-map localization of query images (see the module docstring).

    Build with ``SiftLocalizer.build``; ``localize`` is safe to call repeatedly.
    """

    def __init__(self, folder: Path, config: SiftConfig, stats: dict):
        self.folder = Path(folder)
        self.config = config
        self.stats = stats
        with np.load(self.folder / "map.npz") as z:
            # Unit float descriptors once, not per query (4 bytes x 128 per map observation).
            self._desc = descriptors_to_float(z["desc_M128"])
            self._point_idx = z["point_idx_M"].astype(np.int64)
            self._offsets = z["offsets"]
            self._points = z["points_P3"]
            self._words = z["words_K128"]
            self._idf = z["idf_K"]
            self._bow = z["bow_IK"]
            self.image_names = [str(n) for n in z["image_names"]]
        s = config.sfm
        self._extractor = SiftExtractor(s.sift_max_side, s.max_features, s.num_threads, s.use_gpu)

    @classmethod
    def build(
        cls, scene: Scene, runs_root: str | Path, config: SiftConfig = SiftConfig(), overwrite: bool = False
    ) -> SiftLocalizer:
        """Load the scene's cached map, building it first when missing or stale."""
        folder = sift_dir(runs_root, scene, config)
        index_path = folder / "index.json"
        if index_path.is_file() and not overwrite:
            index = read_json(index_path)
            if index.get("scene_fingerprint") == scene.fingerprint and index.get("settings") == config.map_settings():
                log.info("using the cached SIFT map in %s", folder)
                return cls(folder, config, index.get("stats", {}))
        if index_path.exists():
            index_path.unlink()
        start = time.perf_counter()
        stats = _export_map(scene, config, folder)
        stats["build_s"] = time.perf_counter() - start
        write_json(
            index_path,
            {
                "scene": scene.id,
                "scene_fingerprint": scene.fingerprint,
                "settings": config.map_settings(),
                "stats": stats,
            },
        )
        log.info("SIFT map of %s: %d points, %.1f s -> %s", scene.id, stats["map_points"], stats["build_s"], folder)
        return cls(folder, config, stats)

    @property
    def map_mb(self) -> float:
        """Size on disk of what a query needs (``map.npz``), in MiB."""
        return (self.folder / "map.npz").stat().st_size / 2**20

    def retrieve(self, desc_NC: np.ndarray) -> np.ndarray:
        """Indices of the ``num_retrieved`` mapping images most similar to unit query descriptors."""
        v = bow_vector(nearest_word(desc_NC, self._words), self._idf)
        sims = self._bow @ v
        k = min(self.config.num_retrieved, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        return top[np.argsort(-sims[top], kind="stable")]

    def localize(self, rgb_HW3: np.ndarray, camera: Camera) -> tuple[PnpResult, dict[str, float]]:
        """Estimate the pose of one query image.

        Args:
            rgb_HW3: uint8 RGB image.
            camera: its pinhole camera (same size as the image).

        Returns:
            The PnP result and wall times in milliseconds: ``features``,
            ``matching`` (retrieval included) and ``ransac``.
        """
        if (rgb_HW3.shape[1], rgb_HW3.shape[0]) != camera.size:
            raise SlocalError(
                f"query image is {rgb_HW3.shape[1]}x{rgb_HW3.shape[0]} but its camera is {camera.width}x{camera.height}"
            )
        t0 = time.perf_counter()
        kp, desc = self._extractor(rgb_HW3)
        t1 = time.perf_counter()
        q = descriptors_to_float(desc)
        q_idx, p_idx = [], []
        for image in self.retrieve(q):
            a, b = self._offsets[image], self._offsets[image + 1]
            qi, mi = match_descriptors(q, self._desc[a:b], self.config.max_ratio)
            q_idx.append(qi)
            p_idx.append(self._point_idx[a:b][mi])
        # The same 2D-3D match found through several retrieved images counts once.
        pairs = np.unique(np.stack([np.concatenate(q_idx), np.concatenate(p_idx)], 1), axis=0)
        uv = kp[pairs[:, 0], :2].astype(np.float64)
        xyz = self._points[pairs[:, 1]]
        t2 = time.perf_counter()
        result = solve_pnp(uv, xyz, camera, self.config.pnp)
        t3 = time.perf_counter()
        return result, {"features": (t1 - t0) * 1e3, "matching": (t2 - t1) * 1e3, "ransac": (t3 - t2) * 1e3}
