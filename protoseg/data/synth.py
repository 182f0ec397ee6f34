"""Synthetic scenes for the miniature twins: polygons of classes with class-specific appearance.

Every class (``key``) has ``NUM_MODES`` = 3 appearance modes, fixed by the key alone (not by the seed),
so train and val images share them. A mode is one cell of a coarse appearance alphabet: a colour of a
``COLOUR_LEVELS``^3 RGB grid (43 levels apart) times one of ``N_TEXTURES`` textures (flat, horizontal,
vertical, checker, diagonal stripes; amplitude ``TEXTURE_AMPLITUDE``, period ``TEXTURE_PERIOD``) =
``ALPHABET_CELLS`` = 1080 cells, against a pixel noise of ``NOISE_STD``. Cells are taken in the order
of one fixed permutation by ``slot(key) * NUM_MODES + mode``, where ``slot(key) = key mod
ALPHABET_SLOTS`` (360): the twins give their classes keys ``base + rank`` with ``base`` a multiple of
360, so the modes of a twin's classes are distinct cells up to 360 classes, and a larger vocabulary
(ADE20K-Full's 847) wraps the alphabet: its classes share cells and it grows more confusable as it
grows. The three modes of a class are unrelated cells: one prototype cannot cover a class.
``cell_of`` names the cell of a (key, mode), for the Bayes ceiling (``protoseg.data.ceiling``).

Colour is the main cue these twins carry, so the mini scale trains without the hue/saturation
distortion (``data.photometric: false``): it would erase the cue.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image, ImageDraw

NUM_MODES = 3
N_TEXTURES = 5
COLOUR_LEVELS = 6
ALPHABET_CELLS = COLOUR_LEVELS ** 3 * N_TEXTURES  # 1080
ALPHABET_SLOTS = ALPHABET_CELLS // NUM_MODES  # 360 classes before the alphabet wraps
TEXTURE_AMPLITUDE = 18.0
TEXTURE_PERIOD = 4.0
NOISE_STD = 3.0


@dataclasses.dataclass(frozen=True)
class Appearance:
    colour: tuple[float, float, float]
    texture: int  # 0 flat, 1 horizontal, 2 vertical, 3 checker, 4 diagonal stripes
    period: float
    amplitude: float


def _alphabet() -> tuple[np.ndarray, np.ndarray]:
    levels = np.linspace(20.0, 235.0, COLOUR_LEVELS)
    colours = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    colour_idx, texture = np.divmod(np.arange(ALPHABET_CELLS), N_TEXTURES)
    perm = np.random.default_rng(12345).permutation(ALPHABET_CELLS)
    return colours[colour_idx[perm]], texture[perm]


_COLOURS, _TEXTURES = _alphabet()


def cell_of(key: int, mode: int) -> int:
    """The alphabet cell (0 .. ALPHABET_CELLS-1) of mode ``mode`` of class ``key``."""
    return (int(key) % ALPHABET_SLOTS * NUM_MODES + int(mode)) % ALPHABET_CELLS


def appearance(key: int, mode: int) -> Appearance:
    """The fixed look of mode ``mode`` (0 .. NUM_MODES-1) of class ``key``."""
    cell = cell_of(key, mode)
    return Appearance(tuple(float(v) for v in _COLOURS[cell]), int(_TEXTURES[cell]),
                      TEXTURE_PERIOD, TEXTURE_AMPLITUDE)


@dataclasses.dataclass
class Region:
    """One painted polygon: its official label value, its appearance key and mode, its outline."""

    value: int
    key: int
    mode: int
    polygon: list[tuple[float, float]]  # (x, y) vertices


def random_polygon(rng: np.random.Generator, h: int, w: int, area_frac: float,
                   min_size: float = 8.0) -> list[tuple[float, float]]:
    """A rectangle, triangle, ellipse or irregular blob covering about ``area_frac`` of the image."""
    area = max(area_frac * h * w, min_size * min_size)
    aspect = math.exp(rng.uniform(-0.7, 0.7))
    rx, ry = math.sqrt(area * aspect) / 2, math.sqrt(area / aspect) / 2
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    kind = int(rng.integers(4))
    if kind == 0:  # rectangle
        angles = [math.pi / 4 + k * math.pi / 2 for k in range(4)]
        radii = [math.sqrt(2)] * 4
    elif kind == 1:  # triangle
        angles = [rng.uniform(0, 2 * math.pi) + k * 2 * math.pi / 3 for k in range(3)]
        radii = [1.6] * 3
    elif kind == 2:  # ellipse
        angles = [k * 2 * math.pi / 16 for k in range(16)]
        radii = [1.15] * 16
    else:  # blob
        angles = sorted(rng.uniform(0, 2 * math.pi, 9))
        radii = list(rng.uniform(0.7, 1.5, 9))
    rot = rng.uniform(0, math.pi)
    pts = []
    for a, r in zip(angles, radii):
        x, y = r * rx * math.cos(a), r * ry * math.sin(a)
        pts.append((round(cx + x * math.cos(rot) - y * math.sin(rot), 1),
                    round(cy + x * math.sin(rot) + y * math.cos(rot), 1)))
    return pts


def rasterise(regions: list[Region], h: int, w: int) -> np.ndarray:
    """Region index map (int32, HxW): later regions paint over earlier ones (PIL polygon fill)."""
    canvas = Image.new("I", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for i, reg in enumerate(regions):
        draw.polygon(reg.polygon, fill=i)
    return np.asarray(canvas, dtype=np.int32)


def render(regions: list[Region], index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 RGB image of the regions: class appearance, texture, mild lighting and noise."""
    h, w = index.shape
    looks = [appearance(r.key, r.mode) for r in regions]
    colour = np.array([lk.colour for lk in looks], dtype=np.float32)[index]
    texture = np.array([lk.texture for lk in looks])[index]
    period = np.array([lk.period for lk in looks], dtype=np.float32)[index]
    amp = np.array([lk.amplitude for lk in looks], dtype=np.float32)[index]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    two_pi = np.float32(2 * np.pi)
    patterns = np.stack([
        np.zeros_like(x),
        np.sign(np.sin(two_pi * (y + 0.5) / period)),  # +0.5: no sample on a zero crossing
        np.sign(np.sin(two_pi * (x + 0.5) / period)),
        np.sign(np.sin(two_pi * (x + 0.5) / period) * np.sin(two_pi * (y + 0.5) / period)),
        np.sign(np.sin(two_pi * (x + y + 0.5) / period)),
    ])
    pattern = np.take_along_axis(patterns, texture[None], axis=0)[0]
    img = colour + (amp * pattern)[..., None]
    gx, gy = rng.uniform(-0.06, 0.06, 2)
    light = 1.0 + gx * (x / w - 0.5) + gy * (y / h - 0.5)
    img = img * light[..., None] + rng.normal(0, NOISE_STD, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def long_tail_counts(n_classes: int, total: int, alpha: float, min_count: int) -> np.ndarray:
    """Region counts per rank: a power law ``(r+1)^-alpha`` scaled to about ``total``, at least
    ``min_count`` each."""
    w = (np.arange(n_classes) + 1.0) ** -alpha
    counts = np.maximum(np.round(w / w.sum() * total), min_count).astype(np.int64)
    return counts


def area_for_rank(rng: np.random.Generator, rank: int, n_classes: int) -> float:
    """Frequent classes get larger regions: area fraction from about 0.3 down to 0.03."""
    scale = 0.3 * (1.0 - 0.9 * min(rank / max(n_classes - 1, 1), 1.0) ** 0.5)
    return float(rng.uniform(0.5, 1.0) * scale)


def scene(rng: np.random.Generator, h: int, w: int, background: tuple[int, int],
          objects: list[tuple[int, int, int]], n_classes: int) -> list[Region]:
    """Regions of one image: a background (value, key) then objects (value, key, rank) drawn
    largest first, so small rare objects stay visible."""
    regions = [Region(background[0], background[1], int(rng.integers(NUM_MODES)),
                      [(0, 0), (w, 0), (w, h), (0, h)])]
    sized = [(area_for_rank(rng, rank, n_classes), value, key) for value, key, rank in objects]
    for area, value, key in sorted(sized, key=lambda t: -t[0]):
        regions.append(Region(value, key, int(rng.integers(NUM_MODES)), random_polygon(rng, h, w, area)))
    return regions
