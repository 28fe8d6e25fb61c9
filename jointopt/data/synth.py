"""Procedural X-ray images of ball-grid-array IC packages, with six defect classes.

Convention: pixel brightness is X-ray *attenuation* (dense material is bright), as in an
inverted radiograph. Solder balls are therefore bright discs with a spherical thickness
profile, gas voids are darker spots inside them, the silicon die is a faint bright
rectangle, gold wire bonds are thin bright curves and cracks are thin dark lines where
material is missing. Copper landing pads are fixed to the package and are a little wider
than the balls, so an aligned ball shows a thin pad rim and a misaligned one shows a
crescent.

Every image is drawn at ``_SS`` times its size and box-downsampled so that thin features
(wires, cracks) survive as soft sub-pixel lines instead of vanishing or aliasing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

from jointopt.errors import field_error

__all__ = ["CLASSES", "render", "render_arrays", "generate"]

CLASSES: tuple[str, ...] = ("good", "void", "bridge", "missing_ball", "crack", "misalignment")

_SS = 4  # supersampling factor
_NOMINAL = 64.0  # geometry below is written in pixels of a 64x64 image and scaled to `size`
_SHIFT = 1.0  # package position jitter, nominal pixels

# Package designs: (columns, rows, pitch, ball radius / pitch, die size / grid size,
# depopulated centre). Pitches keep every ball inside the frame at the largest jitter.
_DESIGNS: tuple[tuple[int, int, float, float, float, bool], ...] = (
    (4, 4, 11.5, 0.36, 0.55, False),
    (5, 5, 10.0, 0.34, 0.50, False),
    (6, 6, 8.8, 0.35, 0.60, True),
    (6, 5, 9.0, 0.35, 0.45, False),
    (5, 4, 10.5, 0.37, 0.60, True),
    (6, 6, 9.0, 0.36, 0.40, False),
    (5, 5, 10.5, 0.33, 0.65, True),
    (4, 5, 11.0, 0.35, 0.50, False),
)


_Patch = tuple[tuple[slice, slice], np.ndarray, np.ndarray]


def _patch(shape: tuple[int, ...], cx: float, cy: float, rad: float) -> _Patch | None:
    """Bounding box of a disc clipped to the image, as slices plus local coordinates."""
    h, w = shape[0], shape[1]
    x0, x1 = max(int(cx - rad) - 1, 0), min(int(cx + rad) + 2, w)
    y0, y1 = max(int(cy - rad) - 1, 0), min(int(cy + rad) + 2, h)
    if x0 >= x1 or y0 >= y1:
        return None
    xs = np.arange(x0, x1, dtype=np.float32) + 0.5 - cx
    ys = np.arange(y0, y1, dtype=np.float32) + 0.5 - cy
    return (slice(y0, y1), slice(x0, x1)), xs[None, :], ys[:, None]


def _sphere(buf: np.ndarray, cx: float, cy: float, r: float, h: float, sign: int = 1) -> None:
    """Max-in (sign=+1) or subtract (sign=-1) a sphere's thickness profile, peak ``h``."""
    p = _patch(buf.shape, cx, cy, r)
    if p is None:
        return
    sl, xs, ys = p
    prof = h * np.sqrt(np.clip(1.0 - (xs * xs + ys * ys) / (r * r), 0.0, None))
    if sign > 0:
        np.maximum(buf[sl], prof, out=buf[sl])
    else:
        buf[sl] = np.clip(buf[sl] - prof, 0.0, None)


def _disc(buf: np.ndarray, cx: float, cy: float, r: float, h: float) -> None:
    """Max-in a flat disc of height ``h`` (a pad is thin and uniform)."""
    p = _patch(buf.shape, cx, cy, r)
    if p is not None:
        sl, xs, ys = p
        np.maximum(buf[sl], np.where(xs * xs + ys * ys <= r * r, h, 0.0), out=buf[sl])


def _capsule(buf: np.ndarray, a: np.ndarray, b: np.ndarray, w: float, h: float) -> None:
    """Max-in a rounded bar of half-width ``w`` from ``a`` to ``b`` (a solder bridge)."""
    mid, half = (a + b) / 2, float(np.linalg.norm(b - a)) / 2
    p = _patch(buf.shape, float(mid[0]), float(mid[1]), half + w)
    if p is None:
        return
    sl, xs, ys = p
    d = (b - a) / max(2 * half, 1e-6)
    # Coordinates along / across the bar, relative to its midpoint.
    along = np.clip(xs * d[0] + ys * d[1], -half, half)
    dx, dy = xs - along * d[0], ys - along * d[1]
    prof = h * np.sqrt(np.clip(1.0 - (dx * dx + dy * dy) / (w * w), 0.0, None))
    np.maximum(buf[sl], prof, out=buf[sl])


def _wander(rng: np.random.Generator, start: np.ndarray, angle: float, length: float,
            steps: int, wiggle: float) -> list[tuple[float, float]]:
    """Jagged polyline of ``steps`` segments heading along ``angle`` (radians), as cracks run."""
    pts, p, dev = [(float(start[0]), float(start[1]))], start.astype(float), 0.0
    for _ in range(steps):
        # Mean-reverting heading: jagged, but it keeps going where it started to.
        dev = 0.5 * dev + rng.normal(0.0, wiggle)
        p = p + (length / steps) * np.array([math.cos(angle + dev), math.sin(angle + dev)])
        pts.append((float(p[0]), float(p[1])))
    return pts


def _edge_point(centre: np.ndarray, half: np.ndarray, side: int, t: float) -> np.ndarray:
    """Point on side ``side`` (0 left, 1 top, 2 right, 3 bottom) at ``t`` in [-1, 1] along it."""
    axis, sgn = side % 2, (-1 if side < 2 else 1)
    p = centre.astype(float).copy()
    p[axis] += sgn * half[axis]
    p[1 - axis] += t * half[1 - axis]
    return p


def _inward(side: int) -> float:
    """Angle pointing from side ``side`` into the rectangle (image y grows downwards)."""
    return (0.0, math.pi / 2, math.pi, -math.pi / 2)[side]


def _wires(rng: np.random.Generator, die_c: np.ndarray, die_half: np.ndarray, S: int,
           k: float) -> np.ndarray:
    """Hi-res [0, 1] mask of wire bonds from die-edge pads to fingers just outside the die."""
    img = Image.new("L", (S, S), 0)
    draw = ImageDraw.Draw(img)
    width = max(1, round(0.7 * k))
    s = np.linspace(0, 1, 9)[:, None]
    for side in range(4):
        out = -np.array([math.cos(_inward(side)), math.sin(_inward(side))])
        n = int(rng.integers(0, 5))
        for t in np.linspace(-0.7, 0.7, n) if n > 1 else rng.uniform(-0.7, 0.7, n):
            start = _edge_point(die_c, die_half, side, float(t))
            end = start + out * rng.uniform(3.0, 7.0) + out[::-1] * rng.uniform(-2.0, 2.0)
            bow = (start + end) / 2 + rng.normal(0.0, 1.2, 2)
            curve = ((1 - s) ** 2 * start + 2 * s * (1 - s) * bow + s * s * end) * k
            draw.line([tuple(p) for p in curve], fill=255, width=width)
            draw.rectangle([*(end * k - 0.8 * k), *(end * k + 0.8 * k)], fill=90)
    return np.asarray(img, np.float32) / 255.0


def _crack(rng: np.random.Generator, die_c: np.ndarray, die_half: np.ndarray,
           pkg_c: np.ndarray, pkg_half: np.ndarray, S: int, k: float) -> np.ndarray:
    """Hi-res [0, 1] mask of a jagged, maybe branched crack from a die (80 %) or package edge."""
    side = int(rng.integers(0, 4))
    c, half = (die_c, die_half) if rng.random() < 0.8 else (pkg_c, pkg_half)
    start = _edge_point(c, half * rng.uniform(0.85, 1.0), side, rng.uniform(-0.7, 0.7))
    # Aim at the inner part of the die / package so the crack crosses material, not air.
    heading = np.arctan2(*(c + rng.uniform(-0.5, 0.5, 2) * half - start)[::-1])
    length = max(14.0, 2 * half[side % 2] * rng.uniform(0.5, 0.9))
    img = Image.new("L", (S, S), 0)
    draw = ImageDraw.Draw(img)
    pts = _wander(rng, start * k, float(heading), length * k, int(rng.integers(5, 10)), 0.35)
    width = max(2, round(rng.uniform(1.5, 2.2) * k))
    draw.line(pts, fill=255, width=width)
    if rng.random() < 0.6:
        branch = _wander(rng, np.array(pts[len(pts) // 2]), rng.uniform(0, 2 * math.pi),
                         0.4 * length * k, 4, 0.4)
        draw.line(branch, fill=255, width=max(1, width - 1))
    return np.asarray(img, np.float32) / 255.0


def _expose(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Imaging chain on the noiseless [0, 1] image: exposure, gradient, blur, gamma, noise."""
    size = img.shape[0]
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    grad = rng.uniform(-0.05, 0.05) * ramp[None, :] + rng.uniform(-0.05, 0.05) * ramp[:, None]
    img = rng.uniform(0.05, 0.15) + rng.uniform(0.8, 1.0) * img + grad
    img = gaussian_filter(img, rng.uniform(0.3, 0.6) * size / _NOMINAL)
    img = np.clip(img, 0.0, 1.0) ** rng.uniform(0.85, 1.15)
    img = img + rng.normal(0.0, rng.uniform(0.005, 0.025), img.shape)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@dataclass
class _Package:
    """Geometry of one package, in nominal 64-px units."""

    cols: int
    rows: int
    pitch: float
    r: float  # nominal ball radius
    centre: np.ndarray
    half: np.ndarray  # package half-size (x, y)
    die_c: np.ndarray
    die_half: np.ndarray
    pads: np.ndarray  # [rows*cols, 2] pad centres, fixed to the package
    has_pad: np.ndarray  # [rows*cols] bool; False where the design has no ball site


def _layout(rng: np.random.Generator) -> _Package:
    """Pick a design from :data:`_DESIGNS` and vary its geometry continuously."""
    # A few designs, each varied around its nominal geometry, like a line that runs
    # several products through one inspection station.
    cols, rows, pitch0, ball_frac, die_frac, depop = _DESIGNS[int(rng.integers(len(_DESIGNS)))]
    pitch = pitch0 * rng.uniform(0.96, 1.04)
    r = pitch * ball_frac * rng.uniform(0.93, 1.07)
    grid_half = np.array([(cols - 1) * pitch / 2 + r, (rows - 1) * pitch / 2 + r])
    centre = _NOMINAL / 2 + rng.uniform(-_SHIFT, _SHIFT, 2)
    gx, gy = np.meshgrid((np.arange(cols) - (cols - 1) / 2) * pitch,
                         (np.arange(rows) - (rows - 1) / 2) * pitch)
    has_pad = np.ones(rows * cols, bool)
    if depop:
        # A depopulated centre has no pads either, so a hole in the grid alone does not
        # mean missing_ball: the pad without a ball does.
        lim = (np.array([cols, rows]) - 2) / 2 * pitch - 1e-6
        has_pad &= ~((np.abs(gx) < lim[0]) & (np.abs(gy) < lim[1])).ravel()
    return _Package(
        cols=cols, rows=rows, pitch=pitch, r=r, centre=centre,
        half=grid_half + rng.uniform(3.0, 5.0, 2),
        die_c=centre + rng.uniform(-1.0, 1.0, 2),
        die_half=grid_half * die_frac * rng.uniform(0.9, 1.1, 2),
        pads=np.stack([gx.ravel(), gy.ravel()], 1) + centre,
        has_pad=has_pad,
    )


def _solder(rng: np.random.Generator, pkg: _Package, class_name: str, S: int,
            k: float) -> tuple[np.ndarray, np.ndarray]:
    """Hi-res solder thickness (1 = a ball's centre) with ball-level defects, and the pad mask."""
    pitch, cols, rows = pkg.pitch, pkg.cols, pkg.rows
    # Balls follow the pads up to a small placement jitter, unless misaligned.
    balls = pkg.pads + rng.normal(0.0, 0.03 * pitch, pkg.pads.shape)
    if class_name == "misalignment":
        if rng.random() < 0.5:
            ang = rng.uniform(0, 2 * math.pi)
            balls += rng.uniform(0.3, 0.5) * pitch * np.array([math.cos(ang), math.sin(ang)])
        else:
            # Large enough that the corner balls move by at least 0.3 pitch.
            lo = max(math.radians(4.0), 0.3 / (math.hypot(cols - 1, rows - 1) / 2))
            t = rng.uniform(lo, math.radians(12.0)) * rng.choice([-1.0, 1.0])
            rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
            balls = (balls - pkg.centre) @ rot.T + pkg.centre
    radii = pkg.r * rng.uniform(0.95, 1.05, len(balls))
    sites = np.flatnonzero(pkg.has_pad)
    present = pkg.has_pad.copy()
    if class_name == "missing_ball":
        present[rng.choice(sites, size=int(rng.integers(2, 6)), replace=False)] = False

    pads = np.zeros((S, S), np.float32)
    r_pad = min(pkg.r * rng.uniform(1.18, 1.32), 0.47 * pitch)
    for px, py in pkg.pads[pkg.has_pad]:
        _disc(pads, px * k, py * k, r_pad * k, 1.0)
    solder = np.zeros((S, S), np.float32)
    for (bx, by), br in zip(balls[present], radii[present], strict=True):
        _sphere(solder, bx * k, by * k, br * k, 1.0)

    if class_name == "bridge":
        for _ in range(int(rng.integers(2, 5))):
            i = int(rng.choice(sites))
            row, col = divmod(i, cols)
            nbrs = [j for j, ok in ((i + 1, col + 1 < cols), (i - 1, col > 0),
                                    (i + cols, row + 1 < rows), (i - cols, row > 0))
                    if ok and present[j]]
            if nbrs:
                j = int(rng.choice(nbrs))
                _capsule(solder, balls[i] * k, balls[j] * k, pkg.r * rng.uniform(0.7, 0.95) * k,
                         rng.uniform(0.85, 1.0))
    elif class_name == "void":
        for i in rng.choice(sites, size=min(int(rng.integers(3, 7)), len(sites)), replace=False):
            for _ in range(int(rng.integers(1, 3))):
                # At least 1.6 nominal px, and deeper than a sphere of that size (1.6x), so a
                # void survives downsampling, blur and noise.
                rv = min(max(1.6, radii[i] * rng.uniform(0.5, 0.7)), 0.75 * radii[i])
                ang = rng.uniform(0, 2 * math.pi)
                off = rng.uniform(0, 0.8 * (radii[i] - rv)) * np.array([np.cos(ang), np.sin(ang)])
                c = (balls[i] + off) * k
                _sphere(solder, c[0], c[1], rv * k, 1.6 * rv / radii[i], sign=-1)
    return solder, pads


def render(class_name: str, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Draw one X-ray image of a BGA package showing ``class_name``.

    Args:
        class_name: one of :data:`CLASSES`.
        rng: the only source of randomness; the same generator state gives the same image.
        size: output height and width in pixels.

    Returns:
        A ``uint8`` array of shape ``(size, size)``.
    """
    if class_name not in CLASSES:
        raise ValueError(f"unknown class {class_name!r}; expected one of {CLASSES}")
    S = size * _SS
    k = S / _NOMINAL  # hi-res pixels per nominal pixel
    pkg = _layout(rng)
    a_sub, a_die = rng.uniform(0.15, 0.3), rng.uniform(0.25, 0.45)
    a_pad, a_ball, a_wire = rng.uniform(0.18, 0.28), rng.uniform(0.7, 1.1), rng.uniform(0.35, 0.7)

    flat = np.zeros((S, S), np.float32)  # substrate, die and pads: what a crack cuts through
    for c, h, a in ((pkg.centre, pkg.half, a_sub), (pkg.die_c, pkg.die_half, a_die)):
        (x0, y0), (x1, y1) = np.maximum(((c - h) * k, (c + h) * k), 0).astype(int)
        flat[y0:y1, x0:x1] += a
    solder, pads = _solder(rng, pkg, class_name, S, k)
    flat += a_pad * pads
    wires = _wires(rng, pkg.die_c, pkg.die_half, S, k)
    if class_name == "crack":
        cut = _crack(rng, pkg.die_c, pkg.die_half, pkg.centre, pkg.half, S, k)
        flat *= 1.0 - cut
        # Joints the crack runs under crack too; otherwise a crack hidden behind a
        # full ball array would show only in the narrow gaps between balls.
        solder *= 1.0 - 0.6 * cut

    att = flat + a_ball * solder + a_wire * wires
    return _expose(rng, (1.0 - np.exp(-att)).reshape(size, _SS, size, _SS).mean(axis=(1, 3)))


def _image_rng(seed: int, c: int, i: int) -> np.random.Generator:
    # Keyed by (seed, class, index) so any subset renders identically in any order.
    return np.random.default_rng([seed, c, i])


def render_arrays(
    per_class: int = 400, size: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Render the whole data set in memory, identical to what :func:`generate` writes.

    Args:
        per_class: images per class.
        size: image height and width in pixels.
        seed: data set seed.

    Returns:
        ``(images, labels)``: uint8 ``[N, size, size]`` and int64 ``[N]``, class-major order.
    """
    images = np.empty((len(CLASSES) * per_class, size, size), np.uint8)
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            images[c * per_class + i] = render(name, _image_rng(seed, c, i), size)
    return images, np.repeat(np.arange(len(CLASSES), dtype=np.int64), per_class)


def generate(out_dir: str | Path, *, per_class: int = 400, size: int = 64, seed: int = 0) -> Path:
    """Write the synthetic data set as an ImageFolder tree of 8-bit grayscale PNGs.

    Files are ``out_dir/<class>/<class>_<i:05d>.png``.

    Args:
        out_dir: root folder; created if missing, existing files with the same names are
            overwritten.
        per_class: images per class.
        size: image height and width in pixels (at least 16).
        seed: data set seed; image ``i`` of class ``c`` depends only on ``(seed, c, i)``.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.
    """
    if per_class < 1:
        raise field_error(None, "per_class", per_class, "must be at least 1")
    if size < 16:
        raise field_error(None, "size", size, "must be at least 16 pixels")
    if seed < 0:
        raise field_error(None, "seed", seed, "must be non-negative")
    out = Path(out_dir)
    for c, name in enumerate(CLASSES):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = render(name, _image_rng(seed, c, i), size)
            Image.fromarray(arr).save(folder / f"{name}_{i:05d}.png")
    return out
