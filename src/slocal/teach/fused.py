"""The fused depth teacher: every mapping frame's depth in one TSDF volume, rendered into each colour camera.

The depth teacher gives each frame the surface that *its own* depth image measured. Where two
frames measure one surface a centimetre apart (sensor noise, a pose a little off, a rig not
quite right), the student is taught two positions for one point. Here every mapping frame's
depth is integrated into one truncated signed distance volume (Open3D's ``VoxelBlockGrid``,
depth camera intrinsics and pose ``Frame.world_from_depth``, so a rig registration is honoured),
its zero level set is extracted as a mesh (marching cubes), and the mesh is ray cast (Open3D's
``RaycastingScene``, CPU) through the pixel centres of each mapping frame's colour target
camera: each target pixel gets the first surface point on its ray. All frames are taught from
one surface.

Why a mesh and not the volume's own ray caster: Open3D's ``VoxelBlockGrid.ray_cast`` finds the
zero crossing from nearest-voxel samples (a bias of up to a voxel along the ray) and casts rays
through integer pixel coordinates; marching cubes interpolates the crossing linearly between
voxel centres, and rays cast on the mesh go exactly through our pixel centres (``x + 0.5``).

Confidence compares the rendered depth with the frame's own measurement rendered into the same
colour camera (``Frame.depth_at``):

- they agree (within ``agree_abs + agree_rel * z``): confidence 1;
- the frame measured nothing there (a hole, or outside the depth camera's narrower field of
  view): the fused surface fills it, with confidence ``fill_conf``;
- they disagree: the frame saw something else there (an object that moved, a surface the
  volume lost, a depth edge that differs between the two cameras): the pixel is left out.

A ray that hits the back of the surface (the mesh's normal facing away from the camera, e.g.
through a gap into the far side of an object) is left out too.

A frame whose depth alone is wrong somewhere pulls the fused surface there by up to
``sdf_trunc`` / (frames seeing it); so the volume is built twice, the second time without the
depth pixels that lie more than ``reject_abs`` from the first surface (a +5 cm patch in one of 20
frames of the procedural room: the surface 15 mm off after one pass, 0.9 mm after two).

Defaults, measured on 7-Scenes redkitchen-gap (100 mapping frames, rig registered) by the
distance between the targets two frames give at the two ends of a SIFT track
(``benchmarks/teacher_consistency.py``): every variant tried lies within 0.88-0.95 cm median
(the depth teacher: 1.42 cm): 2, 3 or 4 cm truncation, 1 or 2 cm voxels, one or two passes,
``min_weight`` 0 or 1, agreement within 1 cm, 2 cm or 3 cm + 2 %. The tolerances mostly trade
labelled pixels (59-87 %) for a little consistency; filled pixels (no own depth, 24 % of the
surface hits, mostly where the colour camera sees beyond the depth camera) are a little less
consistent (0.88 cm without them), hence their lower confidence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Annotated

import numpy as np
from pydantic import Field

from slocal.config import config_dataclass
from slocal.data.scene import Frame, Scene
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera, pixel_centers
from slocal.geometry.pose import invert, transform_points
from slocal.progress import progress_bar
from slocal.teach.targets import FrameTargets, target_camera

# Open3D is imported inside the functions that use it, like pycolmap elsewhere: it loads large
# native libraries (about 2 s) that every other teacher, distillation and the localizer never need.

log = logging.getLogger(__name__)


@config_dataclass
class FusedTeacherConfig:
    """Settings of the fused teacher (lengths in metres; divided by ``Scene.metres_per_unit`` for the volume).

    Attributes:
        max_side: longer side of the target grid in pixels.
        voxel_size: edge of a TSDF voxel.
        sdf_trunc: truncation distance of the signed distance (a multiple of ``voxel_size``).
        min_depth, max_depth: measured depth range integrated, and rendered depth range kept.
        min_weight: a voxel takes part in the surface when more than this many depth images
            updated it (Open3D's ``weight_threshold``; 0: any, so a surface one frame saw counts).
        agree_abs, agree_rel: the frame's own depth agrees with the rendered one within
            ``agree_abs + agree_rel * z``.
        fill_conf: confidence of a pixel the frame measured no depth at (0: leave it out).
        reject_outliers: build the volume a second time without the depth pixels that lie farther
            than ``reject_abs + reject_rel * z`` from the first one's surface.
        block_resolution: voxels per block edge in Open3D's sparse grid.
    """

    max_side: Annotated[int, Field(ge=8)] = 320
    voxel_size: Annotated[float, Field(gt=0)] = 0.01
    sdf_trunc: Annotated[float, Field(gt=0)] = 0.04
    min_depth: Annotated[float, Field(ge=0)] = 0.1
    max_depth: Annotated[float, Field(gt=0)] = 10.0
    min_weight: Annotated[float, Field(ge=0)] = 0.0
    agree_abs: Annotated[float, Field(ge=0)] = 0.03
    agree_rel: Annotated[float, Field(ge=0)] = 0.02
    fill_conf: Annotated[float, Field(ge=0, le=1)] = 0.5
    reject_outliers: bool = True
    reject_abs: Annotated[float, Field(ge=0)] = 0.02
    reject_rel: Annotated[float, Field(ge=0)] = 0.0
    block_resolution: Annotated[int, Field(ge=2)] = 8

    def __post_init__(self) -> None:
        if self.sdf_trunc < self.voxel_size or self.min_depth >= self.max_depth:
            raise SlocalError(
                f"FusedTeacherConfig: sdf_trunc={self.sdf_trunc} must be at least one voxel ({self.voxel_size}) and "
                f"min_depth={self.min_depth} below max_depth={self.max_depth}"
            )


def _open3d():
    """The ``open3d`` module, or a SlocalError that says how to install it."""
    try:
        import open3d
    except ImportError as exc:
        raise SlocalError(
            f"the fused teacher needs Open3D, which could not be imported ({exc}); install it with "
            "'pip install open3d' (on Linux it also needs the system library libusb-1.0, Debian/Ubuntu: "
            "'apt-get install libusb-1.0-0')"
        ) from exc
    return open3d


@dataclass(frozen=True, eq=False)
class FusedSurface:
    """The fused surface as a triangle mesh in world units, ready to ray cast.

    Attributes:
        vertices_V3: float32 vertex positions.
        triangles_T3: int32 vertex indices.
        stats: counts and times of the fusion.
    """

    vertices_V3: np.ndarray
    triangles_T3: np.ndarray
    stats: dict

    def raycaster(self) -> SurfaceRaycaster:
        return SurfaceRaycaster(self)


class SurfaceRaycaster:
    """Ray casts a ``FusedSurface`` through the pixel centres of a camera (Open3D ``RaycastingScene``)."""

    def __init__(self, surface: FusedSurface):
        o3d = _open3d()
        self._o3d = o3d
        self._scene = o3d.t.geometry.RaycastingScene()
        if len(surface.triangles_T3):
            self._scene.add_triangles(
                o3d.core.Tensor(np.ascontiguousarray(surface.vertices_V3, np.float32)),
                o3d.core.Tensor(np.ascontiguousarray(surface.triangles_T3, np.uint32)),
            )

    def render(self, camera: Camera, world_from_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Depth of the first surface hit and whether the surface faces the camera there.

        Args:
            camera: the pixel grid (rays through the pixel centres ``x + 0.5``).
            world_from_cam: (4, 4) pose of ``camera``, world units.

        Returns:
            depth_HW float32 (z in the camera's frame, world units, 0 where no hit) and
            front_HW bool (the hit triangle faces the camera).
        """
        uv = pixel_centers(camera.width, camera.height).reshape(-1, 2)
        rotation = np.eye(4)
        rotation[:3, :3] = world_from_cam[:3, :3]
        # Directions with z = 1 in the camera frame: the hit distance is the z-depth.
        dirs = transform_points(rotation, camera.rays(uv))
        rays = np.concatenate([np.broadcast_to(world_from_cam[:3, 3], dirs.shape), dirs], axis=1).astype(np.float32)
        hit = self._scene.cast_rays(self._o3d.core.Tensor(rays))
        z = hit["t_hit"].numpy().astype(np.float64)
        normals = hit["primitive_normals"].numpy().astype(np.float64)
        ok = np.isfinite(z)
        front = ok & (np.einsum("ij,ij->i", normals, dirs) < 0)
        depth = np.where(ok, z, 0.0).astype(np.float32)
        return depth.reshape(camera.height, camera.width), front.reshape(camera.height, camera.width)


def _depth_in_units(frame: Frame, metres_per_unit: float, c: FusedTeacherConfig) -> np.ndarray:
    depth = frame.read_depth()
    depth[(depth < c.min_depth) | (depth > c.max_depth)] = 0.0
    return depth / np.float32(metres_per_unit)


def _disagreeing(
    frame: Frame, depth_units: np.ndarray, reference: SurfaceRaycaster, metres_per_unit: float, c: FusedTeacherConfig
) -> np.ndarray:
    """Depth pixels farther than the rejection tolerance from the reference surface rendered into the depth camera.

    The surface is rendered at ``max_side`` resolution (the targets' own) and read back by nearest
    pixel: the tolerance is centimetres, far above what the coarser grid moves a slanted surface.
    """
    dcam = frame.depth_camera
    low = dcam if max(dcam.width, dcam.height) <= c.max_side else dcam.scaled_to_max_side(c.max_side)
    z_low, _ = reference.render(low, frame.world_from_depth)
    rows = np.minimum(((np.arange(dcam.height) + 0.5) * low.height / dcam.height).astype(np.int64), low.height - 1)
    cols = np.minimum(((np.arange(dcam.width) + 0.5) * low.width / dcam.width).astype(np.int64), low.width - 1)
    z_ref = z_low[rows[:, None], cols[None, :]].astype(np.float64) * metres_per_unit
    d = depth_units.astype(np.float64) * metres_per_unit
    return (d > 0) & (z_ref > 0) & (np.abs(d - z_ref) > c.reject_abs + c.reject_rel * d)


def _touch_points(frame: Frame, depth_units: np.ndarray, trunc_units: float) -> np.ndarray:
    """World points of a depth image, dense enough that the blocks around them cover its whole surface.

    Open3D activates the blocks within the truncation distance of each point; its own
    ``compute_unique_block_coordinates(depth, ...)`` reads every 4th pixel only, which leaves holes
    where a pixel is wide (the room's 160 x 120 depth at 5 m: 15 cm between samples). Here the
    samples lie at most half a truncation distance apart at the frame's farthest depth: a pixel
    stride where pixels are small, sub-pixels (each carrying its pixel's depth) where they are wide.

    Returns:
        float32 (N, 3) world points.
    """
    dcam = frame.depth_camera
    z_max = float(depth_units.max())
    step = 0.5 * trunc_units * min(dcam.fx, dcam.fy) / z_max  # pixels per half truncation at z_max
    if step >= 1:
        stride = int(step)
        uv = pixel_centers(dcam.width, dcam.height, stride).reshape(-1, 2)
    else:
        k = int(np.ceil(1.0 / step))
        uv = pixel_centers(dcam.width * k, dcam.height * k).reshape(-1, 2) / k
    z = depth_units[uv[:, 1].astype(np.int64), uv[:, 0].astype(np.int64)]
    keep = z > 0
    points = transform_points(frame.world_from_depth, dcam.backproject(uv[keep], z[keep]))
    return points.astype(np.float32)


def _integrate(scene: Scene, c: FusedTeacherConfig, reference: SurfaceRaycaster | None) -> tuple[object, dict]:
    """One TSDF volume of the mapping frames' depth; with ``reference``, pixels that disagree with it left out."""
    o3d = _open3d()
    o3c = o3d.core
    mpu = scene.metres_per_unit
    trunc_voxels = c.sdf_trunc / c.voxel_size
    depth_max = c.max_depth / mpu
    grid = o3d.t.geometry.VoxelBlockGrid(
        attr_names=("tsdf", "weight"),
        attr_dtypes=(o3c.float32, o3c.float32),
        attr_channels=((1,), (1,)),
        voxel_size=c.voxel_size / mpu,
        block_resolution=c.block_resolution,
        block_count=20_000,  # a starting capacity: Open3D's hash map grows as blocks are activated
        device=o3c.Device("CPU:0"),
    )
    integrated = measured = rejected = 0
    what = "fused teacher: integrating depth" + (" without outliers" if reference is not None else "")
    for frame in progress_bar(scene.mapping, what):
        depth = _depth_in_units(frame, mpu, c)
        if reference is not None:
            bad = _disagreeing(frame, depth, reference, mpu, c)
            measured += int((depth > 0).sum())
            rejected += int(bad.sum())
            depth[bad] = 0.0
        if not (depth > 0).any():
            continue
        # Open3D projects a voxel to the depth pixel floor(u), floor(v): the pixel whose square
        # [j, j + 1) holds it, our convention, so the intrinsics pass unchanged.
        K = o3c.Tensor(frame.depth_camera.K)
        extrinsic = o3c.Tensor(invert(frame.world_from_depth))
        image = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(depth)))
        points = o3d.t.geometry.PointCloud(o3c.Tensor(_touch_points(frame, depth, c.sdf_trunc / mpu)))
        blocks = grid.compute_unique_block_coordinates(points, trunc_voxels)
        grid.integrate(blocks, image, K, extrinsic, 1.0, depth_max, trunc_voxels)
        integrated += 1
    stats = {"frames_integrated": integrated}
    if reference is not None:
        stats["rejected_pct"] = 100.0 * rejected / max(measured, 1)
    return grid, stats


def _extract(grid, c: FusedTeacherConfig) -> tuple[np.ndarray, np.ndarray]:
    mesh = grid.extract_triangle_mesh(weight_threshold=c.min_weight)
    if "indices" not in mesh.triangle or mesh.triangle.indices.shape[0] == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)
    return mesh.vertex.positions.numpy().astype(np.float32), mesh.triangle.indices.numpy().astype(np.int32)


def fuse_depth(scene: Scene, config: FusedTeacherConfig = FusedTeacherConfig()) -> FusedSurface:
    """Integrate every mapping frame's depth into one TSDF volume and extract its surface.

    With ``config.reject_outliers`` the volume is built twice: the second time, each frame's depth
    pixels that lie farther than ``reject_abs + reject_rel * z`` from the first surface are left out
    (a frame that alone saw something else pulls a surface by up to ``sdf_trunc`` / observations).

    Raises:
        SlocalError: the scene lacks depth or a metric scale, or the volume holds no surface.
    """
    if not scene.has_depth:
        raise SlocalError("the fused teacher needs depth images for every mapping frame; use --teacher sfm", scene.root)
    if scene.metres_per_unit is None:
        raise SlocalError(f"scene {scene.id} has no metric scale: its depth cannot be fused with its poses", scene.root)
    c = config
    _open3d()  # imported before the clock starts: the time split is the work's
    t0 = time.perf_counter()
    grid, stats = _integrate(scene, c, None)
    t1 = time.perf_counter()
    vertices, triangles = _extract(grid, c)
    t2 = time.perf_counter()
    stats.update(blocks=int(grid.hashmap().size()), integrate_s=t1 - t0, mesh_s=t2 - t1)
    if c.reject_outliers and len(triangles):
        first = FusedSurface(vertices, triangles, {}).raycaster()
        grid, second = _integrate(scene, c, first)
        t3 = time.perf_counter()
        vertices, triangles = _extract(grid, c)
        t4 = time.perf_counter()
        stats.update(second, blocks=int(grid.hashmap().size()), integrate_s=t1 - t0 + t3 - t2, mesh_s=t2 - t1 + t4 - t3)
    if not len(triangles):
        raise SlocalError(f"scene {scene.id}: the fused depth volume holds no surface", scene.root)
    stats.update(vertices=int(len(vertices)), triangles=int(len(triangles)))
    log.info(
        "fused %d depth images into %d blocks of %.1f cm voxels (%.1f s%s); mesh of %d triangles (%.1f s)",
        stats["frames_integrated"],
        stats["blocks"],
        c.voxel_size * 100,
        stats["integrate_s"],
        f", two passes, {stats['rejected_pct']:.1f} % of depth pixels rejected" if "rejected_pct" in stats else "",
        len(triangles),
        stats["mesh_s"],
    )
    return FusedSurface(vertices, triangles, stats)


def fused_frame_targets(
    frame: Frame, raycaster: SurfaceRaycaster, metres_per_unit: float, config: FusedTeacherConfig
) -> tuple[FrameTargets, dict]:
    """One mapping frame's targets from the fused surface, and counts of how its own depth compares.

    Returns:
        The targets, and ``{"hit", "agree", "fill", "disagree", "back"}`` pixel counts.
    """
    c = config
    camera = target_camera(frame, c.max_side)
    z_units, front = raycaster.render(camera, frame.world_from_cam)
    z = z_units.astype(np.float64) * metres_per_unit
    hit = (z >= c.min_depth) & (z <= c.max_depth)
    own = frame.depth_at(camera).astype(np.float64)
    measured = own > 0
    agree = hit & measured & (np.abs(z - own) <= c.agree_abs + c.agree_rel * z)
    fill = hit & ~measured
    valid = front & (agree | (fill if c.fill_conf > 0 else False))
    conf = np.where(agree, 1.0, np.where(fill, c.fill_conf, 0.0)).astype(np.float32)
    conf[~valid] = 0.0
    uv = pixel_centers(camera.width, camera.height).reshape(-1, 2)
    pts_cam = camera.backproject(uv, z_units.reshape(-1))
    coords = transform_points(frame.world_from_cam, pts_cam).astype(np.float32).reshape(camera.height, camera.width, 3)
    coords[~valid] = np.nan
    counts = {
        "hit": int(hit.sum()),
        "agree": int((agree & front).sum()),
        "fill": int((fill & front).sum()),
        "disagree": int((hit & measured & ~agree & front).sum()),
        "back": int((hit & ~front).sum()),
    }
    return FrameTargets(frame.name, camera, coords, conf, valid), counts


class FusedTeacher:
    """Scene coordinates from the mapping frames' depth fused into one surface (see the module docstring).

    After ``teach`` has run, ``stats`` holds the fusion's counts and the time split
    (``integrate_s``, ``mesh_s``, ``render_s``).
    """

    name = "fused"

    def __init__(self, config: FusedTeacherConfig = FusedTeacherConfig()):
        self.config = config
        self.stats: dict = {}

    def settings(self) -> dict:
        return asdict(self.config)

    def teach(self, scene: Scene) -> Iterator[FrameTargets]:
        c = self.config
        surface = fuse_depth(scene, c)
        raycaster = surface.raycaster()
        totals = {"hit": 0, "agree": 0, "fill": 0, "disagree": 0, "back": 0}
        render_s = 0.0
        for frame in progress_bar(scene.mapping, "fused teacher: rendering targets"):
            t0 = time.perf_counter()
            targets, counts = fused_frame_targets(frame, raycaster, scene.metres_per_unit, c)
            render_s += time.perf_counter() - t0
            for k, v in counts.items():
                totals[k] += v
            yield targets
        hits = max(totals["hit"], 1)
        self.stats = {
            **surface.stats,
            "render_s": render_s,
            **{f"{k}_pct": 100.0 * v / hits for k, v in totals.items() if k != "hit"},
        }
        log.info(
            "fused targets: of the pixels that hit the surface, the frame's own depth agrees at %.1f %%, "
            "is missing at %.1f %% (filled), disagrees at %.1f %% (left out); %.1f %% hit its back; "
            "rendering %.1f s",
            self.stats["agree_pct"],
            self.stats["fill_pct"],
            self.stats["disagree_pct"],
            self.stats["back_pct"],
            render_s,
        )
