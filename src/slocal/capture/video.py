"""Videos through PyAV: frames sampled by time and sharpness for mapping, and writing a video.

Sampling (``sample_video``): the video is cut into time slots of ``1 / fps``
seconds; in each slot the sharpest frame (variance of the Laplacian of its grey
image at a fixed working size) is kept. A slot whose sharpest frame is still
blurred, sharper than less than ``blur_ratio`` times the median of its
``blur_window`` neighbouring slots on each side, is skipped and counted: motion
blur comes in bursts (a quick turn), so the comparison is local, not against a
threshold that would depend on the scene's texture. Frames are decoded once,
streamed (only each slot's best frame is held), turned upright by the
stream's display rotation (phones record portrait videos sideways) and written
as JPEG files at most ``max_side`` pixels on their longer side.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from slocal.errors import SlocalError
from slocal.io import atomic_path, write_image
from slocal.progress import make_progress

# PyAV (FFmpeg) is imported where a video is opened: scenes, teachers and students never need it.

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".3gp", ".mts")
# Longer side of the grey image the sharpness is measured on: the same blur then scores the
# same on a 4K and a 720p video.
SHARPNESS_SIDE = 480


def is_video(path: str | Path) -> bool:
    """True for a file whose suffix is a video container's (``VIDEO_SUFFIXES``)."""
    path = Path(path)
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def sharpness(grey_HW: np.ndarray) -> float:
    """Variance of the Laplacian of a grey image: high for sharp edges, low when blurred."""
    return float(cv2.Laplacian(np.asarray(grey_HW, np.float32), cv2.CV_32F).var())


def _working_grey(grey_HW: np.ndarray) -> np.ndarray:
    h, w = grey_HW.shape
    scale = SHARPNESS_SIDE / max(h, w)
    if scale < 1.0:
        grey_HW = cv2.resize(
            grey_HW, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
    return grey_HW


def keep_sharp(best_S: np.ndarray, blur_ratio: float, window: int) -> np.ndarray:
    """Which slots to keep: their best sharpness is at least ``blur_ratio`` x the local median.

    Args:
        best_S: sharpness of each slot's sharpest frame, in time order.
        blur_ratio: 0 keeps every slot.
        window: slots on each side of the local median.

    Returns:
        bool (S,).
    """
    best_S = np.asarray(best_S, np.float64)
    keep = np.ones(len(best_S), bool)
    if blur_ratio <= 0:
        return keep
    for i in range(len(best_S)):
        local = best_S[max(0, i - window) : i + window + 1]
        keep[i] = best_S[i] >= blur_ratio * float(np.median(local))
    return keep


@dataclass(frozen=True)
class SampledFrame:
    """One frame kept (or skipped as blurred) from a video.

    Attributes:
        name: image name relative to the images folder (``<prefix>/frame-XXXXXX.jpg``, the decoded frame index).
        time_s: presentation time in seconds.
        sharpness: variance of the Laplacian at the working size.
    """

    name: str
    time_s: float
    sharpness: float


@dataclass(frozen=True)
class VideoSample:
    """What ``sample_video`` decoded and kept.

    Attributes:
        path: the video.
        kept: frames written, in time order.
        blurred: slots skipped because even their sharpest frame was blurred.
        decoded: frames decoded.
        duration_s: time of the last decoded frame.
        size: (width, height) of the written frames.
        rotation_deg: display rotation applied (counter-clockwise).
    """

    path: Path
    kept: tuple[SampledFrame, ...]
    blurred: tuple[SampledFrame, ...] = field(default=())
    decoded: int = 0
    duration_s: float = 0.0
    size: tuple[int, int] = (0, 0)
    rotation_deg: int = 0

    def summary(self) -> dict:
        return {
            "video": str(self.path),
            "decoded_frames": self.decoded,
            "duration_s": round(self.duration_s, 3),
            "kept_frames": len(self.kept),
            "blurred_slots_skipped": len(self.blurred),
            "blurred_times_s": [round(f.time_s, 2) for f in self.blurred],
            "frame_size": list(self.size),
            "rotation_deg": self.rotation_deg,
        }


def _ffmpeg_reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())[:160] or type(exc).__name__


def open_video(path: str | Path):
    """Open a video with PyAV; returns ``(container, video stream)``.

    Raises:
        SlocalError: missing file, a file FFmpeg cannot read, or no video stream in it.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise SlocalError("video not found", path)
    if path.stat().st_size == 0:
        raise SlocalError("video file is empty (0 bytes)", path)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise SlocalError(f"cannot decode video: {_ffmpeg_reason(exc)}", path) from None
    if not container.streams.video:
        container.close()
        raise SlocalError("no video stream in the file", path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _duration_s(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _upright_rgb(frame, max_side: int) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    k = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
    if k:
        rgb = np.ascontiguousarray(np.rot90(rgb, k))
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return rgb


def sample_video(
    path: str | Path,
    images_dir: Path,
    prefix: str,
    fps: float,
    max_side: int,
    blur_ratio: float,
    blur_window: int,
    jpeg_quality: int = 95,
) -> VideoSample:
    """Decode a video and write its sharpest frame per ``1 / fps`` seconds to ``images_dir / prefix``.

    Args:
        path: the video file.
        images_dir: the scene's image folder (being built).
        prefix: sub-folder of the frames (their names start with it).
        fps: time slots per second, so at most this many frames per second of video.
        max_side: longer side of the written frames (larger frames are downscaled).
        blur_ratio, blur_window: see ``keep_sharp``; blurred slots' files are removed.
        jpeg_quality: of the written frames.

    Raises:
        SlocalError: the video cannot be opened or decoded, or has no frame.
    """
    import av

    if not (fps > 0 and max_side >= 16):
        raise SlocalError(f"invalid sampling: fps={fps}, max_side={max_side}")
    path = Path(path)
    container, stream = open_video(path)
    rate = float(stream.average_rate) if stream.average_rate else 30.0
    total = _duration_s(container, stream)
    slots: list[tuple[int, float, float, Path]] = []  # (slot, time, sharpness, file) of each slot's best frame
    best: tuple[int, float, float, int, np.ndarray] | None = None  # slot, time, sharpness, index, rgb
    decoded, last_time, rotation, size = 0, 0.0, 0, (0, 0)

    def flush() -> None:
        nonlocal size
        if best is None:
            return
        slot, time_s, score, index, rgb = best
        out = images_dir / prefix / f"frame-{index:06d}.jpg"
        write_image(out, rgb, jpeg_quality=jpeg_quality)
        size = (rgb.shape[1], rgb.shape[0])
        slots.append((slot, time_s, score, out))

    try:
        with make_progress() as progress:
            task = progress.add_task(f"map: decoding {path.name}", total=total, info="")
            try:
                for frame in container.decode(stream):
                    time_s = float(frame.time) if frame.time is not None else decoded / rate
                    index, decoded = decoded, decoded + 1
                    rotation = int(getattr(frame, "rotation", 0) or 0)
                    slot = math.floor(time_s * fps + 1e-9)
                    if best is not None and slot != best[0]:
                        flush()
                        best = None
                    grey = _working_grey(frame.to_ndarray(format="gray"))
                    score = sharpness(grey)
                    if best is None or score > best[2]:
                        best = (slot, time_s, score, index, _upright_rgb(frame, max_side))
                    progress.update(task, advance=max(0.0, time_s - last_time), info=f"{len(slots)} frames kept")
                    last_time = max(last_time, time_s)
            except av.FFmpegError as exc:
                raise SlocalError(f"cannot decode video at {last_time:.1f} s: {_ffmpeg_reason(exc)}", path) from None
            flush()
    finally:
        container.close()
    if not slots:
        raise SlocalError("no decodable frame in the video", path)
    keep = keep_sharp(np.array([s[2] for s in slots]), blur_ratio, blur_window)
    kept, blurred = [], []
    for (_, time_s, score, out), ok in zip(slots, keep):
        frame = SampledFrame(out.relative_to(images_dir).as_posix(), time_s, score)
        if ok:
            kept.append(frame)
        else:
            out.unlink()
            blurred.append(frame)
    if blurred:
        log.info("%s: skipped %d of %d time slots as blurred", path.name, len(blurred), len(slots))
    return VideoSample(path, tuple(kept), tuple(blurred), decoded, last_time, size, rotation)


def video_codec() -> str:
    """The encoder ``write_video`` uses: H.264 (libx264) when this PyAV build has it, else MPEG-4 part 2."""
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float, crf: int = 18) -> int:
    """Encode RGB frames into a video file (atomically; the container from the suffix, e.g. ``.mp4``).

    Args:
        frames: uint8 (H, W, 3) RGB images of one even size.
        path: the video to write.
        fps: frame rate.
        crf: H.264 constant rate factor (lower: better quality, larger file).

    Returns:
        The number of frames written.
    """
    import av

    path = Path(path)
    codec = video_codec()
    written = 0
    with atomic_path(path) as tmp:
        container = av.open(str(tmp), mode="w")
        try:
            stream = None
            for rgb in frames:
                h, w = rgb.shape[:2]
                if stream is None:
                    if w % 2 or h % 2:
                        raise SlocalError(f"video frames must have an even size, got {w}x{h}", path)
                    stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
                    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                    if codec == "libx264":
                        stream.options = {"crf": str(crf), "preset": "medium"}
                elif (w, h) != (stream.width, stream.height):
                    raise SlocalError(f"frame {written} is {w}x{h}, the video is {stream.width}x{stream.height}", path)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb, np.uint8), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
                written += 1
            if stream is None:
                raise SlocalError("no frame to write", path)
            for packet in stream.encode():
                container.mux(packet)
        finally:
            container.close()
    return written
