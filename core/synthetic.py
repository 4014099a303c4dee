"""Deterministic generator of a SYNTHETIC polyp-like colonoscopy segmentation dataset in the PraNet layout.

It is the project's embedded default data because real data cannot be downloaded; nothing it writes is a real
colonoscopy image, and every dataset root it writes carries the SYNTHETIC_MARKER file saying so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from core.files import OutputKind, output_folder

TEST_SET_NAMES = ("Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "CVC-300", "ETIS-LaribPolypDB")
SYNTHETIC_MARKER = "SYNTHETIC_DATA.txt"
DEMO_DATA_KIND = OutputKind("a demo data folder")

# Split ids feed the per-sample seed. They are spelled out instead of taken from list positions so that adding or
# reordering sets can never change the bytes of the ones that already exist.
_SPLIT_IDS = {"train": 0, "Kvasir": 1, "CVC-ClinicDB": 2, "CVC-ColonDB": 3, "CVC-300": 4, "ETIS-LaribPolypDB": 5}

# Ranges are (low, high) for uniform draws; lengths are fractions of the image side so every size looks alike.
DEFAULT_PARAMS: dict[str, Any] = {
    "polyp_counts": (0.15, 0.55, 0.20, 0.10),  # P(0, 1, 2, 3 polyps)
    "radius": (0.04, 0.35),  # semi-major axis, drawn log-uniformly so small polyps are not rare
    "aspect": (0.55, 1.0),  # minor / major axis
    "partly_outside_p": 0.3,  # chance a polyp centre may sit near the border and the polyp get cut off
    "tint": (0.03, 0.12),  # how far polyp colour departs from the mucosa under it
    "gain": (0.85, 1.05),  # global exposure
    "warmth": 0.0,  # > 0 shifts the mucosa towards orange, < 0 towards pink/magenta
    "vignette": (0.30, 0.60),
    "lumen_p": 0.5,
    "folds": (0, 4),  # integer range, inclusive
    "vessels": (2, 8),
    "spec_bg": (0, 4),
    "blur": (0.4, 1.0),  # times max(0.5, size / 256) px of Gaussian sigma
    "noise": (0.008, 0.025),  # Gaussian noise std on the [0, 1] scale
}

# Mild, hand-picked domain shifts: each test set differs from training in one or two visible ways, as the real
# benchmarks differ in polyp size, optics and lighting, without becoming a different task.
SET_PARAMS: dict[str, dict[str, Any]] = {
    "train": {},
    "Kvasir": {"radius": (0.08, 0.38), "gain": (0.95, 1.10), "polyp_counts": (0.10, 0.60, 0.20, 0.10)},
    "CVC-ClinicDB": {"blur": (0.8, 1.6), "warmth": -0.4},
    "CVC-ColonDB": {"gain": (0.65, 0.90), "lumen_p": 0.8, "folds": (2, 5)},
    "CVC-300": {"warmth": 0.35, "gain": (0.95, 1.15), "vignette": (0.50, 0.80)},
    "ETIS-LaribPolypDB": {"radius": (0.03, 0.14), "aspect": (0.7, 1.0), "noise": (0.02, 0.04), "blur": (0.7, 1.4)},
}

_SHIFT = 4  # sub-pixel bits for cv2 drawing; without them small shapes snap to whole pixels at 64 px
_ONE = 1 << _SHIFT


def _fx(v: float) -> int:
    return round(v * _ONE)


def _field(rng: np.random.Generator, size: int, octaves: tuple[int, ...], gains: tuple[float, ...]) -> np.ndarray:
    """Smooth zero-mean, unit-std random field: octaves summed on a small grid, then one upscale."""
    base = max(octaves) * 2
    acc = np.zeros((base, base), np.float32)
    for cells, g in zip(octaves, gains):
        small = rng.standard_normal((cells, cells), dtype=np.float32)
        acc += g * cv2.resize(small, (base, base), interpolation=cv2.INTER_CUBIC)
    acc -= acc.mean()
    acc /= acc.std() + 1e-6
    return cv2.resize(acc, (size, size), interpolation=cv2.INTER_CUBIC)


def _merged_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    p = dict(DEFAULT_PARAMS)
    if params:
        unknown = set(params) - set(DEFAULT_PARAMS)
        if unknown:
            raise KeyError(f"unknown synthetic generator parameter(s): {sorted(unknown)}")
        p.update(params)
    return p


def render_sample(
    rng: np.random.Generator, size: int, *, params: Mapping[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (image HxWx3 uint8 BGR, mask HxW uint8 in {0,255}).

    ``params`` overrides entries of DEFAULT_PARAMS (see SET_PARAMS for the per-test-set overrides).
    """
    if size < 8:
        raise ValueError(f"size must be >= 8 px, got {size}")
    p = _merged_params(params)
    S = int(size)
    # The order of the random draws *is* the dataset: every step below draws from `rng` in turn, so reordering
    # the steps (or the draws inside one) changes the bytes of every image ever generated.
    mucosa = _mucosa(rng, S, float(p["warmth"]))
    lcx, lcy, lumen_dark = _lumen(rng, S, p["lumen_p"])
    fd, fl = _folds(rng, S, p["folds"], lcx, lcy)
    v = _vessels(rng, S, p["vessels"])

    shade_bg = (1.0 - 0.45 * fd + 0.18 * fl) * lumen_dark
    img = mucosa * shade_bg[..., None]
    img *= 1.0 - v[..., None] * np.array([0.35, 0.38, 0.10], np.float32)

    light = _light(rng)
    mask = np.zeros((S, S), np.uint8)
    highlights: list[tuple[float, float, float]] = []  # (x, y, radius) in px
    n_polyps = int(rng.choice(4, p=np.asarray(p["polyp_counts"], np.float64)))
    for _ in range(n_polyps):
        highlights += _draw_polyp(rng, S, p, light, img, mask, mucosa, lumen_dark)
    u = rng.uniform
    for _ in range(int(rng.integers(p["spec_bg"][0], p["spec_bg"][1] + 1))):
        highlights.append((u(0, S), u(0, S), S * u(0.003, 0.012)))
    return _optics(rng, S, p, img, highlights), mask


def _mucosa(rng: np.random.Generator, S: int, warm: float) -> np.ndarray:
    """Per-image base colour modulated by multi-scale brightness and redness fields (HxWx3 float32 BGR)."""
    u = rng.uniform
    red = u(0.78, 0.95)
    green = red * (u(0.40, 0.55) + 0.06 * warm)
    blue = red * (u(0.34, 0.52) - 0.06 * warm)
    base = np.array([blue, green, red], np.float32)
    lum = 1.0 + 0.16 * _field(rng, S, (3, 6, 12), (1.0, 0.5, 0.25))
    # Fine grain keeps flat regions from being trivially smooth, so "smooth = polyp" is not a usable shortcut.
    lum += 0.035 * cv2.resize(
        rng.standard_normal((max(4, S // 4),) * 2, dtype=np.float32), (S, S), interpolation=cv2.INTER_CUBIC
    )
    chroma = _field(rng, S, (2, 5), (1.0, 0.5))
    return lum[..., None] * base * (1.0 + chroma[..., None] * np.array([0.10, 0.08, 0.0], np.float32))


def _lumen(rng: np.random.Generator, S: int, lumen_p: float) -> tuple[float, float, np.ndarray]:
    """The lumen's centre (x, y) in px, possibly off the image, and its darkening factor (HxW float32)."""
    u = rng.uniform
    # Dark blurred blob drawn small and upscaled, since a wide blur at full size would dominate cost.
    small = 32
    has_lumen = u() < lumen_p
    if has_lumen:
        lcx, lcy = u(0.15, 0.85) * S, u(0.15, 0.85) * S
    else:
        # Off-image centre: folds still curve coherently around the unseen lumen.
        ang = u(0, 2 * math.pi)
        lcx, lcy = S * (0.5 + 0.9 * math.cos(ang)), S * (0.5 + 0.9 * math.sin(ang))
    lumen_dark = np.ones((S, S), np.float32)
    if has_lumen:
        blob = np.zeros((small, small), np.float32)
        r = u(0.08, 0.22) * small
        axes = (max(1, round(r)), max(1, round(r * u(0.6, 1.0))))
        cv2.ellipse(blob, (round(lcx * small / S), round(lcy * small / S)), axes, u(0, 180), 0, 360, 1.0, -1)
        sharp = cv2.GaussianBlur(blob, (0, 0), r * 0.5 + 0.5)
        wide: np.ndarray = cv2.GaussianBlur(blob, (0, 0), r * 1.8 + 1.0)
        wide /= wide.max() + 1e-6
        dark = np.clip(0.75 * sharp + 0.45 * wide, 0.0, 1.0)
        lumen_dark = 1.0 - u(0.6, 0.9) * cv2.resize(dark, (S, S), interpolation=cv2.INTER_CUBIC)
        np.clip(lumen_dark, 0.04, 1.0, out=lumen_dark)
    return lcx, lcy, lumen_dark


def _folds(
    rng: np.random.Generator, S: int, count: tuple[int, int], lcx: float, lcy: float
) -> tuple[np.ndarray, np.ndarray]:
    """Dark arcs roughly concentric with the lumen, each with a lit ridge on its outer side: (dark, lit) in [0, 1]."""
    u = rng.uniform
    fold_dark = np.zeros((S, S), np.uint8)
    fold_lit = np.zeros((S, S), np.uint8)
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        rad = u(0.2, 1.1) * S
        ax = (rad, rad * u(0.55, 1.0))
        ang, start, span = u(0, 180), u(0, 360), u(40, 150)
        th = max(1, round(S * u(0.012, 0.035)))
        c = (_fx(lcx + u(-0.1, 0.1) * S), _fx(lcy + u(-0.1, 0.1) * S))
        cv2.ellipse(
            fold_dark, c, (_fx(ax[0]), _fx(ax[1])), ang, start, start + span, int(u(110, 220)), th, cv2.LINE_AA, _SHIFT
        )
        off = 1.3 * th + 1
        cv2.ellipse(
            fold_lit,
            c,
            (_fx(ax[0] + off), _fx(ax[1] + off)),
            ang,
            start,
            start + span,
            int(u(80, 200)),
            th,
            cv2.LINE_AA,
            _SHIFT,
        )
    # Blur comparable to the band width turns drawn strokes into rounded ridges instead of string-like lines.
    fold_sigma = max(0.6, S * 0.01)
    fd = cv2.GaussianBlur(fold_dark, (0, 0), fold_sigma).astype(np.float32) * (1 / 255)
    fl = cv2.GaussianBlur(fold_lit, (0, 0), fold_sigma).astype(np.float32) * (1 / 255)
    return fd, fl


def _vessels(rng: np.random.Generator, S: int, count: tuple[int, int]) -> np.ndarray:
    """Thin random-walk curves (HxW in [0, 1]); the caller darkens green/blue more than red under them."""
    u = rng.uniform
    vessel = np.zeros((S, S), np.uint8)
    vth = 1 if S < 400 else 2
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        n = int(rng.integers(6, 18))
        heading = u(0, 2 * math.pi) + np.cumsum(rng.normal(0, 0.45, n))
        step = S * u(0.02, 0.05)
        pts = np.empty((n + 1, 2), np.float64)
        pts[0] = u(0, S), u(0, S)
        pts[1:] = pts[0] + np.cumsum(step * np.stack([np.cos(heading), np.sin(heading)], 1), 0)
        cv2.polylines(vessel, [np.round(pts * _ONE).astype(np.int32)], False, int(u(70, 200)), vth, cv2.LINE_AA, _SHIFT)
    return vessel.astype(np.float32) * (1 / 255)


class _Light(NamedTuple):
    """One light for the whole image, used for polyp shading, cast shadows and highlight placement."""

    angle: float  # azimuth in the image plane, radians
    L: np.ndarray  # unit vector towards the light
    H: np.ndarray  # unit half-vector between light and camera


def _light(rng: np.random.Generator) -> _Light:
    u = rng.uniform
    la = u(0, 2 * math.pi)
    lz = u(0.7, 0.95)  # the light rides on the endoscope tip, so it is never far from the viewing axis
    lxy = math.sqrt(1 - lz * lz)
    L = np.array([lxy * math.cos(la), lxy * math.sin(la), lz])
    H = L + np.array([0.0, 0.0, 1.0])
    H /= np.linalg.norm(H)
    return _Light(la, L, H)


class _Polyp(NamedTuple):
    """One polyp's ellipse (semi-axes a, b in px, angle theta, centre cx, cy) and its relief."""

    a: float
    b: float
    theta: float
    cx: float
    cy: float
    flat: float  # < 1: sessile, low dome; > 1: pedunculated-looking, steep sides
    edge_w: float  # px over which the polyp blends into the mucosa
    sh_off: float  # px its cast shadow is pushed away from the light


def _polyp_shape(rng: np.random.Generator, S: int, p: Mapping[str, Any]) -> _Polyp:
    u = rng.uniform
    r_lo, r_hi = p["radius"]
    a = S * math.exp(u(math.log(r_lo), math.log(r_hi)))
    b = a * u(*p["aspect"])
    theta = u(0, math.pi)
    if u() < p["partly_outside_p"]:
        cx, cy = u(0, S), u(0, S)
    else:
        lo, hi = min(a, S / 2), max(S - a, S / 2)
        cx, cy = u(lo, hi), u(lo, hi)
    flat = u(0.45, 1.2)
    edge_w = max(0.8, S * u(0.003, 0.01) + a * u(0.0, 0.06))
    sh_off = S * u(0.008, 0.03) * flat
    return _Polyp(a, b, theta, cx, cy, flat, edge_w, sh_off)


def _draw_polyp(
    rng: np.random.Generator,
    S: int,
    p: Mapping[str, Any],
    light: _Light,
    img: np.ndarray,
    mask: np.ndarray,
    mucosa: np.ndarray,
    lumen_dark: np.ndarray,
) -> list[tuple[float, float, float]]:
    """Draw one polyp into `img` (with its shadow) and `mask`, in place; return its highlights (x, y, radius)."""
    pol = _polyp_shape(rng, S, p)
    a, b, cx, cy = pol.a, pol.b, pol.cx, pol.cy
    ext = a + pol.sh_off + pol.edge_w + 2
    x0, x1 = max(0, int(cx - ext)), min(S, math.ceil(cx + ext) + 1)
    y0, y1 = max(0, int(cy - ext)), min(S, math.ceil(cy + ext) + 1)
    if x0 >= x1 or y0 >= y1:
        return []
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    ct, st = math.cos(pol.theta), math.sin(pol.theta)
    nu = (dx * ct + dy * st) * (1 / a)
    nv = (dy * ct - dx * st) * (1 / b)
    rho2 = nu * nu + nv * nv
    rho = np.sqrt(rho2)
    # The label is exactly rho <= 1 and the drawn edge is centred on it (alpha = 0.5 at rho = 1), so the mask
    # and the visible polyp boundary coincide.
    mask[y0:y1, x0:x1][rho <= 1.0] = 255
    alpha = np.clip(0.5 + (1.0 - rho) * (math.sqrt(a * b) / pol.edge_w), 0.0, 1.0)

    roi = img[y0:y1, x0:x1]
    roi *= (1.0 - _cast_shadow(rng, pol, light, dx, dy))[..., None]
    shade, sheen = _dome_shading(rng, pol, light, nu, nv, rho2)
    pbase = _polyp_colour(rng, p, mucosa[y0:y1, x0:x1] * np.sqrt(lumen_dark[y0:y1, x0:x1])[..., None])
    tex = 1.0 + 0.05 * cv2.resize(
        rng.standard_normal((6, 6), dtype=np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC
    )
    pcol = pbase * (shade * tex)[..., None] + sheen[..., None]
    a3 = alpha[..., None]
    roi *= 1.0 - a3
    roi += pcol * a3
    return _polyp_highlights(rng, S, pol, light)


def _cast_shadow(rng: np.random.Generator, pol: _Polyp, light: _Light, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """How much the polyp's shadow darkens each pixel of its box (0: not at all)."""
    # Cast shadow: the same ellipse, slightly enlarged and pushed away from the light, darkening the mucosa.
    ct, st = math.cos(pol.theta), math.sin(pol.theta)
    sdx, sdy = dx + pol.sh_off * math.cos(light.angle), dy + pol.sh_off * math.sin(light.angle)
    snu = (sdx * ct + sdy * st) * (1 / (pol.a * 1.08))
    snv = (sdy * ct - sdx * st) * (1 / (pol.b * 1.08))
    srho = np.sqrt(snu * snu + snv * snv)
    return np.clip((1.05 - srho) * 4.0, 0.0, 1.0) * rng.uniform(0.15, 0.35)


def _dome_shading(
    rng: np.random.Generator, pol: _Polyp, light: _Light, nu: np.ndarray, nv: np.ndarray, rho2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(shade factor, additive sheen) over the polyp's box, from its ellipse coordinates (nu, nv)."""
    u = rng.uniform
    flat, L, H = pol.flat, light.L, light.H
    ct, st = math.cos(pol.theta), math.sin(pol.theta)
    # Lambert + a faint Phong sheen on a dome whose normal is (flat*x, flat*y, sqrt(1 - rho^2)).
    h = np.sqrt(np.clip(1.0 - rho2, 0.0, 1.0))
    nx = nu * ct - nv * st
    ny = nu * st + nv * ct
    inv = 1.0 / np.sqrt(flat * flat * np.minimum(rho2, 1.0) + h * h + 1e-6)
    ndl = np.clip((flat * (nx * L[0] + ny * L[1]) + h * L[2]) * inv, 0.0, 1.0)
    ndh = np.clip((flat * (nx * H[0] + ny * H[1]) + h * H[2]) * inv, 0.0, 1.0)
    amb = u(0.35, 0.55)
    # Normalised so the flat top matches the surrounding mucosa's brightness: shape, not level, gives it away.
    shade = (amb + (1 - amb) * ndl) * (1.0 / (amb + (1 - amb) * L[2]))
    sheen = u(0.0, 0.12) * ndh**30
    return shade, sheen


def _polyp_colour(rng: np.random.Generator, p: Mapping[str, Any], pbase: np.ndarray) -> np.ndarray:
    """The polyp's colour before shading: the mucosa under it (`pbase`), tinted redder or paler."""
    u = rng.uniform
    delta = u(*p["tint"])
    if u() < 0.6:  # redder, more vascular-looking
        return pbase * np.array([1 - 0.9 * delta, 1 - delta, 1 + 0.3 * delta], np.float32)
    return pbase + (1.0 - pbase) * delta  # paler


def _polyp_highlights(rng: np.random.Generator, S: int, pol: _Polyp, light: _Light) -> list[tuple[float, float, float]]:
    """Specular spots (x, y, radius) on the polyp, or none (one polyp in five)."""
    u = rng.uniform
    if not u() < 0.8:
        return []
    a, b, flat, H = pol.a, pol.b, pol.flat, light.H
    ct, st = math.cos(pol.theta), math.sin(pol.theta)
    # Highlights sit where the dome's normal bisects light and camera, as real specular spots do.
    q = np.array([H[0], H[1]]) / (flat * H[2])
    hn = q / math.sqrt(1.0 + q @ q)
    hu = (hn[0] * ct + hn[1] * st) * a
    hv = (hn[1] * ct - hn[0] * st) * b
    hx, hy = pol.cx + hu * ct - hv * st, pol.cy + hu * st + hv * ct
    spots = []
    for _ in range(int(rng.integers(1, 5))):
        jr = u(0, 0.18) * b
        ja = u(0, 2 * math.pi)
        rad = min(S * u(0.004, 0.02), 0.25 * b)
        spots.append((hx + jr * math.cos(ja), hy + jr * math.sin(ja), rad))
    return spots


def _optics(
    rng: np.random.Generator,
    S: int,
    p: Mapping[str, Any],
    img: np.ndarray,
    highlights: list[tuple[float, float, float]],
) -> np.ndarray:
    """Specular spots, vignetting, exposure, blur and sensor noise on `img` (modified); returns uint8 BGR."""
    u = rng.uniform
    if highlights:
        spec = np.zeros((S, S), np.uint8)
        for hx, hy, rad in highlights:
            cv2.ellipse(
                spec,
                (_fx(hx), _fx(hy)),
                (_fx(rad), _fx(rad * u(0.4, 1.0))),
                u(0, 180),
                0,
                360,
                255,
                -1,
                cv2.LINE_AA,
                _SHIFT,
            )
        spec_sigma = max(0.35, S * 0.002)
        core = cv2.GaussianBlur(spec, (0, 0), spec_sigma).astype(np.float32) * (1 / 255)
        halo = cv2.GaussianBlur(core, (0, 0), spec_sigma * 4)
        s = np.clip(core + 0.35 * halo, 0.0, 1.0)[..., None]
        img *= 1.0 - s
        img += 1.15 * s

    vx = np.arange(S, dtype=np.float32)[None, :] - np.float32(S * (0.5 + u(-0.06, 0.06)))
    vy = np.arange(S, dtype=np.float32)[:, None] - np.float32(S * (0.5 + u(-0.06, 0.06)))
    r2 = (vx * vx + vy * vy) * (2.0 / (S * S))  # 1.0 at the corners
    vig = np.clip(1.0 - u(*p["vignette"]) * r2 ** (u(1.0, 1.6)), 0.05, 1.0)
    img *= (vig * u(*p["gain"]))[..., None]

    sigma = u(*p["blur"]) * max(0.5, S / 256)
    blurred: np.ndarray = cv2.GaussianBlur(img, (0, 0), sigma)  # float32 in, float32 out (cv2's stubs: int or float)
    blurred += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(u(*p["noise"]))
    return np.clip(blurred * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _slug(split: str) -> str:
    return split.lower()


def _write_split(root: Path, split: str, n: int, size: int, seed: int) -> None:
    img_dir, mask_dir = root / "images", root / "masks"
    img_dir.mkdir(parents=True)
    mask_dir.mkdir(parents=True)
    params = SET_PARAMS[split]
    width = max(4, len(str(max(n - 1, 0))))
    for i in range(n):
        # A fresh generator per sample keeps sample i identical whatever n_train / n_test are.
        rng = np.random.default_rng([seed, _SPLIT_IDS[split], i])
        image, mask = render_sample(rng, size, params=params)
        stem = f"synthetic-{_slug(split)}-{i:0{width}d}"
        ok_i, jpg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        ok_m, png = cv2.imencode(".png", mask)
        if not (ok_i and ok_m):
            raise RuntimeError(f"OpenCV failed to encode synthetic sample {stem}")
        # imencode + write_bytes rather than imwrite: imwrite silently returns False on some non-ASCII paths.
        (img_dir / f"{stem}.jpg").write_bytes(jpg.tobytes())
        (mask_dir / f"{stem}.png").write_bytes(png.tobytes())


def write_demo_dataset(out: str | Path, size: int = 64, n_train: int = 48, n_test: int = 8, seed: int = 0) -> Path:
    """Write the synthetic dataset in the PraNet layout under ``out`` and return ``out``.

    Layout: out/TrainDataset/{images,masks} and out/TestDataset/<name>/{images,masks} for each of TEST_SET_NAMES,
    plus out/SYNTHETIC_MARKER. An existing ``out`` is replaced only if it is empty or earlier demo data this
    project wrote (files added to it since are kept); otherwise a UserError (core.files.output_folder).
    """
    out = Path(out)
    if size < 8:
        raise ValueError(f"size must be >= 8 px, got {size}")
    if n_train < 0 or n_test < 0:
        raise ValueError(f"sample counts must be >= 0, got n_train={n_train}, n_test={n_test}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0 (numpy SeedSequence requirement), got {seed}")

    # Built beside the target and renamed in one step, so a crash never leaves a half-written dataset at ``out``.
    with output_folder(out, DEMO_DATA_KIND) as tmp:
        _write_split(tmp / "TrainDataset", "train", n_train, size, seed)
        for name in TEST_SET_NAMES:
            _write_split(tmp / "TestDataset" / name, name, n_test, size, seed)
        (tmp / SYNTHETIC_MARKER).write_text(
            "SYNTHETIC DATA — generated by `python -m core.data demo` "
            f"(seed={seed}, size={size} px, n_train={n_train}, n_test={n_test} per test set, "
            f"test sets: {', '.join(TEST_SET_NAMES)}).\n"
            "Not real colonoscopy images; numbers measured on it say nothing about polyp segmentation.\n",
            encoding="utf-8",
        )
    return out
