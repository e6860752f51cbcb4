"""Procedural textures: value noise, marks, glyphs and posters per face; mip pyramids and trilinear sampling."""

from __future__ import annotations

import math

import cv2
import numpy as np

_GLYPHS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789#@%&?"

# (cell size in metres, luminance amplitude, chroma amplitude) of the noise octaves.
_OCTAVES = (
    (1.0, 0.16, 0.05),
    (0.45, 0.15, 0.04),
    (0.2, 0.14, 0.035),
    (0.09, 0.14, 0.03),
    (0.04, 0.13, 0.025),
    (0.018, 0.11, 0.015),
)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """An RGB colour in [0, 1] from hue in turns, saturation and value."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _base_colour(kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "floor":
        return _hsv(rng.uniform(0.04, 0.11), rng.uniform(0.4, 0.6), rng.uniform(0.45, 0.6))
    if kind == "ceiling":
        return _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.05, 0.15), rng.uniform(0.8, 0.9))
    if kind == "wall":
        return _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.2, 0.4), rng.uniform(0.65, 0.8))
    if kind == "poster":
        return _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.9))
    return _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.3, 0.7), rng.uniform(0.4, 0.75))


def _value_noise(width: int, height: int, w_m: float, h_m: float, cell_m: float, channels: int, rng) -> np.ndarray:
    """Smooth noise in [-1, 1] with features of about ``cell_m``, (height, width, channels) float32."""
    gw, gh = math.ceil(w_m / cell_m) + 2, math.ceil(h_m / cell_m) + 2
    grid = rng.random((gh, gw, channels), dtype=np.float32) * 2.0 - 1.0
    out = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return out.reshape(height, width, channels)


def _tiles(img: np.ndarray, base: np.ndarray, px: float, rng: np.random.Generator) -> None:
    """Square floor tiles: each tile's own shade, dark grout lines between them (in place)."""
    height, width = img.shape[:2]
    tile = max(4, int(rng.uniform(0.3, 0.6) * px))
    grout = max(1, int(0.012 * px))
    grout_colour = np.clip(base * 0.45 * 255.0, 0, 255)
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            patch = img[y0 : y0 + tile, x0 : x0 + tile]
            patch[:] = np.clip(patch.astype(np.float32) * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
            patch[:grout] = grout_colour
            patch[:, :grout] = grout_colour


def _wallpaper(img: np.ndarray, base: np.ndarray, px: float, rng: np.random.Generator) -> None:
    """Vertical wallpaper stripes of two alternating tints (in place)."""
    width = img.shape[1]
    period = max(4, int(rng.uniform(0.08, 0.25) * px))
    tint = np.clip(base * rng.uniform(0.6, 0.85) * 255.0, 0, 255).astype(np.float32)
    stripe = (np.arange(width) // (period // 2)) % 2 == 1
    img[:, stripe] = (0.5 * img[:, stripe] + 0.5 * tint).astype(np.uint8)


def albedo_texture(
    w_m: float, h_m: float, texels_per_metre: float, rng: np.random.Generator, kind: str, style: str = "plain"
) -> np.ndarray:
    """A unique, detailed texture for a ``w_m`` x ``h_m`` metre face; uint8 RGB (rows along v).

    ``style`` ``tiled`` lays tiles on floors and stripes on walls under the marks and posters;
    ``plain`` (the demo room) draws no random number more than it always has.
    """
    width = max(4, math.ceil(w_m * texels_per_metre))
    height = max(4, math.ceil(h_m * texels_per_metre))
    base = _base_colour(kind, rng).astype(np.float32)
    lum = np.zeros((height, width, 1), np.float32)
    chroma = np.zeros((height, width, 3), np.float32)
    for cell_m, a_lum, a_chroma in _OCTAVES:
        lum += a_lum * _value_noise(width, height, w_m, h_m, cell_m, 1, rng)
        chroma += a_chroma * _value_noise(width, height, w_m, h_m, cell_m, 3, rng)
    img = np.clip(base * (1.0 + 1.6 * lum) + chroma, 0.0, 1.0)
    img = np.ascontiguousarray((img * 255.0 + 0.5).astype(np.uint8))
    px = texels_per_metre
    area = w_m * h_m
    if style == "tiled" and kind == "floor":
        _tiles(img, base, px, rng)
    elif style == "tiled" and kind == "wall":
        _wallpaper(img, base, px, rng)
    elif style not in ("plain", "tiled"):
        raise ValueError(f"unknown texture style {style!r}")

    def colour() -> tuple[int, int, int]:
        return tuple(int(v) for v in rng.integers(0, 256, 3))

    def tone() -> tuple[int, int, int]:
        """A shade of the surface's own colour: keeps surfaces distinguishable by hue."""
        return tuple(int(v) for v in np.clip(base * rng.uniform(0.3, 1.5) * 255.0 + rng.normal(0, 12, 3), 0, 255))

    def point() -> tuple[int, int]:
        return int(rng.integers(0, width)), int(rng.integers(0, height))

    # Stripe and checker patches: strong oriented structure at a few centimetres.
    for _ in range(rng.poisson(1.2 * area)):
        pw, ph = int(rng.uniform(0.15, 0.5) * px), int(rng.uniform(0.15, 0.5) * px)
        x0, y0 = int(rng.integers(0, max(1, width - pw))), int(rng.integers(0, max(1, height - ph)))
        patch = img[y0 : y0 + ph, x0 : x0 + pw]
        yy, xx = np.mgrid[0 : patch.shape[0], 0 : patch.shape[1]].astype(np.float32)
        angle, period = rng.uniform(0, math.pi), rng.uniform(0.02, 0.07) * px
        phase = (xx * math.cos(angle) + yy * math.sin(angle)) / period
        if rng.random() < 0.3:
            phase2 = (-xx * math.sin(angle) + yy * math.cos(angle)) / period
            mask = (np.floor(phase) + np.floor(phase2)) % 2 == 0
        else:
            mask = np.floor(phase) % 2 == 0
        patch[mask] = (0.35 * patch[mask] + 0.65 * np.array(colour())).astype(np.uint8)
    # Blobs and rings, 2-15 cm.
    for _ in range(rng.poisson(14 * area)):
        axes = (max(1, int(rng.uniform(0.02, 0.13) * px)), max(1, int(rng.uniform(0.02, 0.13) * px)))
        thickness = -1 if rng.random() < 0.6 else max(1, int(rng.uniform(0.005, 0.02) * px))
        fill = tone() if rng.random() < 0.6 else colour()
        cv2.ellipse(img, point(), axes, float(rng.uniform(0, 180)), 0, 360, fill, thickness, cv2.LINE_AA)
    # Small marks and glyphs, 1-5 cm: the detail a stride-8 cell sees from 1-3 m.
    for _ in range(rng.poisson(190 * area)):
        shape = rng.random()
        size = max(2, int(rng.uniform(0.012, 0.05) * px))
        x, y = point()
        if shape < 0.3:
            glyph = _GLYPHS[int(rng.integers(len(_GLYPHS)))]
            font_scale = size / 22.0  # Hershey simplex glyphs are ~22 px tall at scale 1
            thickness = max(1, size // 8)
            cv2.putText(img, glyph, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, colour(), thickness, cv2.LINE_AA)
        elif shape < 0.55:
            cv2.circle(img, (x, y), max(1, size // 2), colour(), -1 if rng.random() < 0.5 else 1, cv2.LINE_AA)
        elif shape < 0.8:
            angle = rng.uniform(0, 2 * math.pi)
            end = (int(x + 2 * size * math.cos(angle)), int(y + 2 * size * math.sin(angle)))
            cv2.line(img, (x, y), end, colour(), max(1, size // 5), cv2.LINE_AA)
        else:
            cv2.rectangle(img, (x, y), (x + size, y + int(size * rng.uniform(0.5, 1.5))), colour(), -1)
    # Posters on walls and box sides, rugs on the floor: large unique landmarks.
    n_big = {"wall": rng.integers(2, 5), "floor": rng.integers(1, 3), "box": int(rng.random() < 0.35)}.get(kind, 0)
    for _ in range(n_big):
        pw_m = min(rng.uniform(0.35, 1.1), 0.8 * w_m)
        ph_m = min(rng.uniform(0.3, 0.9), 0.8 * h_m)
        if pw_m < 0.15 or ph_m < 0.15:
            continue
        poster = albedo_texture(pw_m, ph_m, texels_per_metre, rng, "poster", style)
        x0 = int(rng.uniform(0.05, max(0.06, w_m - pw_m - 0.05)) * px)
        if kind == "wall":  # v runs down from the ceiling: keep posters between 0.7 m and 2.3 m up
            y0 = int(rng.uniform(max(0.05, h_m - 2.3), max(0.06, h_m - 0.7 - ph_m)) * px)
        else:
            y0 = int(rng.uniform(0.05, max(0.06, h_m - ph_m - 0.05)) * px)
        ph, pw = min(poster.shape[0], height - y0), min(poster.shape[1], width - x0)
        if ph <= 0 or pw <= 0:
            continue
        img[y0 : y0 + ph, x0 : x0 + pw] = poster[:ph, :pw]
        cv2.rectangle(img, (x0, y0), (x0 + pw - 1, y0 + ph - 1), colour(), max(1, int(0.015 * px)))
    return img


def pyramid(tex_HW3: np.ndarray, min_side: int = 4, max_levels: int = 6) -> list[np.ndarray]:
    levels = [tex_HW3]
    while len(levels) < max_levels and min(levels[-1].shape[:2]) >= 2 * min_side:
        h, w = levels[-1].shape[:2]
        levels.append(cv2.resize(levels[-1], ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA))
    return levels


def _bilinear(tex_HW3: np.ndarray, x_N: np.ndarray, y_N: np.ndarray) -> np.ndarray:
    """Bilinear lookup at continuous texel coordinates (texel centres at integers), clamped at the border.

    cv2.remap does the gather; its maps must stay below 32767 columns, hence the (rows, 1024) layout.
    """
    n = len(x_N)
    cols = 1024
    rows = max(1, -(-n // cols))
    map_x = np.zeros(rows * cols, np.float32)
    map_y = np.zeros(rows * cols, np.float32)
    map_x[:n] = x_N
    map_y[:n] = y_N
    out = cv2.remap(
        tex_HW3, map_x.reshape(rows, cols), map_y.reshape(rows, cols), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return out.reshape(rows * cols, -1)[:n]


def sample_trilinear(
    levels: list[np.ndarray], size_uv: tuple[float, float], uv_m_N2: np.ndarray, footprint_m_N: np.ndarray
) -> np.ndarray:
    """Sample a texture pyramid at face coordinates (metres) with a per-sample footprint (metres)."""
    w_m, h_m = size_uv
    texel_m = w_m / levels[0].shape[1]
    lod = np.clip(np.log2(np.maximum(footprint_m_N / texel_m, 1e-6)), 0.0, len(levels) - 1.0)
    lo = np.floor(lod).astype(np.int64)
    frac = (lod - lo).astype(np.float32)[:, None]
    out = np.zeros((len(uv_m_N2), 3), np.float32)
    for level in np.unique(lo):
        sel = np.flatnonzero(lo == level)
        colours = []
        for k in (level, min(level + 1, len(levels) - 1)):
            tex = levels[k]
            # Texel i of a level covers [i, i + 1) * (size / n): its centre is at i + 0.5.
            x = uv_m_N2[sel, 0] * (tex.shape[1] / w_m) - 0.5
            y = uv_m_N2[sel, 1] * (tex.shape[0] / h_m) - 0.5
            colours.append(_bilinear(tex, x, y))
        out[sel] = colours[0] * (1 - frac[sel]) + colours[1] * frac[sel]
    return out
