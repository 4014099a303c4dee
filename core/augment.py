"""Training augmentation on uint8 arrays: flips and rotation as one affine warp shared by image, mask and
teacher logits, then gamma and colour jitter as composed lookup tables.

It draws from the distribution of the albumentations pipeline it replaced (`albumentations_reference`, which
tests compare against over many samples) with the same operations, bit for bit but for the single warp's
rounding (<= 1 level, rare pixels) and the hue shift (see `hue_matrix`), 1.6-1.7x faster per 320 px sample
(bench/data.py). Parameters are drawn first, in one call
(`sample_params`), so a sample's augmentation is a function of its generator's seed alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import stringzilla

if TYPE_CHECKING:
    import albumentations as A

HFLIP_P = VFLIP_P = 0.5
ROTATE_P, ROTATE_LIMIT = 0.5, 30.0  # degrees, uniform in [-limit, limit]
GAMMA_P, GAMMA_LIMIT = 0.3, (0.8, 1.2)
JITTER_P = 0.5
BRIGHTNESS, CONTRAST, SATURATION, HUE = (0.8, 1.2), (0.8, 1.2), (0.85, 1.15), (-0.02, 0.02)
# Reflected borders for all three targets: no fill value has to be invented for a mask or for logits.
BORDER = cv2.BORDER_REFLECT_101


@dataclass(frozen=True)
class Jitter:
    """torchvision-style colour jitter: four factors applied in a random order (0 brightness, 1 contrast,
    2 saturation, 3 hue)."""

    brightness: float
    contrast: float
    saturation: float
    hue: float
    order: tuple[int, ...]


@dataclass(frozen=True)
class AugmentParams:
    """One sample's augmentation; None means the transform was not drawn."""

    hflip: bool
    vflip: bool
    angle: float | None  # degrees, counter-clockwise on screen (albumentations' Rotate convention)
    gamma: float | None
    jitter: Jitter | None


def sample_params(rng: np.random.Generator) -> AugmentParams:
    """Draw one sample's augmentation, from one vector of uniforms (one generator call: a dozen small
    calls cost as much as the flips). Each parameter has its own uniform whether or not its transform
    applies, so parameters are independent."""
    u = rng.random(15)

    def between(limits: tuple[float, float], x: float) -> float:
        return float(limits[0] + (limits[1] - limits[0]) * x)

    jitter = Jitter(
        between(BRIGHTNESS, u[7]),
        between(CONTRAST, u[8]),
        between(SATURATION, u[9]),
        between(HUE, u[10]),
        tuple(int(i) for i in np.argsort(u[11:15])),
    )  # a uniform permutation
    return AugmentParams(
        hflip=bool(u[0] < HFLIP_P),
        vflip=bool(u[1] < VFLIP_P),
        angle=between((-ROTATE_LIMIT, ROTATE_LIMIT), u[5]) if u[2] < ROTATE_P else None,
        gamma=between(GAMMA_LIMIT, u[6]) if u[3] < GAMMA_P else None,
        jitter=jitter if u[4] < JITTER_P else None,
    )


def affine_matrix(params: AugmentParams, height: int, width: int) -> np.ndarray:
    """The 2x3 forward (source -> destination) matrix of flips then rotation about the pixel centre, as
    albumentations' HorizontalFlip, VerticalFlip and Rotate compose it (plain floats: a handful of 3x3
    numpy products cost more than the flips themselves)."""
    sx, tx = (-1.0, width - 1.0) if params.hflip else (1.0, 0.0)
    sy, ty = (-1.0, height - 1.0) if params.vflip else (1.0, 0.0)
    c, s = 1.0, 0.0
    if params.angle is not None:
        a = math.radians(params.angle % 360)
        c, s = math.cos(a), math.sin(a)
    # Rotation about (cx, cy): x' = R (x - c) + c with R = [[c, s], [-s, c]], after the flips x -> s x + t.
    cx, cy = width / 2 - 0.5, height / 2 - 0.5
    return np.array(
        [[c * sx, s * sy, c * (tx - cx) + s * (ty - cy) + cx], [-s * sx, c * sy, -s * (tx - cx) + c * (ty - cy) + cy]]
    )


def geometric(
    params: AugmentParams, image: np.ndarray, mask: np.ndarray, logits: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Move image (bilinear), mask (nearest) and logits (bilinear) by one transform. Inputs are never
    written to (they may be a read-only memory map); image and mask come back as the inputs themselves
    when nothing moves, logits always as a new float32 array."""
    if logits is not None:
        logits = logits.astype(np.float32)  # warpAffine has no fp16; the loss wants float32 anyway
    if params.angle is None:
        # Flips alone are exact copies: no resampling, no border.
        code = {(True, False): 1, (False, True): 0, (True, True): -1}.get((params.hflip, params.vflip))
        if code is None:
            return image, mask, logits
        return (cv2.flip(image, code), cv2.flip(mask, code), None if logits is None else cv2.flip(logits, code))
    height, width = mask.shape
    matrix = affine_matrix(params, height, width)

    def warp(array: np.ndarray, interpolation: int) -> np.ndarray:
        return cv2.warpAffine(array, matrix, (width, height), flags=interpolation, borderMode=BORDER)

    # OpenCV's bilinear warp has a vector path for 4 channels, not 3: padding to RGBA and back is 1.5x
    # faster than warping RGB (measured at 320 px, one thread), with the same result.
    image = cv2.cvtColor(warp(cv2.cvtColor(image, cv2.COLOR_RGB2RGBA), cv2.INTER_LINEAR), cv2.COLOR_RGBA2RGB)
    return image, warp(mask, cv2.INTER_NEAREST), None if logits is None else warp(logits, cv2.INTER_LINEAR)


def photometric(params: AugmentParams, image: np.ndarray) -> np.ndarray:
    """Gamma, then colour jitter, on an RGB uint8 image. Consecutive point operations (gamma, brightness,
    contrast) are composed into one lookup table and applied in one pass; the tables and the saturation
    blend are albumentations' own (same truncation, clipping and rounding), so for the same parameters the
    result is the same image, except for the hue shift (see `hue_matrix`)."""
    lut: np.ndarray | None = None  # pending point operation, applied before any cross-channel one

    def flush(img: np.ndarray) -> np.ndarray:
        nonlocal lut
        out = img if lut is None else apply_lut(img, lut)
        lut = None
        return out

    def then(table: np.ndarray) -> None:
        nonlocal lut
        lut = table if lut is None else table[lut]

    if params.gamma is not None:
        then(gamma_table(params.gamma))
    jitter = params.jitter
    if jitter is not None:
        for op in jitter.order:
            if op == 0 and jitter.brightness != 1:
                then(_clip_u8(np.arange(256, dtype=np.float32) * np.float32(jitter.brightness)))
            elif op == 1 and jitter.contrast != 1:
                image = flush(image)  # contrast pivots on the mean grey level of the image as it is now
                mean = cv2.mean(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))[0]
                then(
                    _clip_u8(
                        np.arange(256, dtype=np.float32) * jitter.contrast + np.float64(mean * (1 - jitter.contrast))
                    )
                )
            elif op == 2 and jitter.saturation != 1:
                image = saturate(flush(image), jitter.saturation)
            elif op == 3 and (rotation := hue_matrix(jitter.hue)) is not None:
                image = cv2.transform(flush(image), rotation)
    return flush(image)


def gamma_table(gamma: float) -> np.ndarray:
    """albumentations' RandomGamma table for uint8 (truncating, as it does)."""
    return ((np.arange(0, 256.0 / 255, 1.0 / 255)[:256] ** gamma) * 255).astype(np.uint8)


def saturate(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the grey image, as albumentations does (bit for bit; a 3x3 colour matrix would save
    0.04 ms but round differently)."""
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(image, factor, grey, 1 - factor, 0)


def hue_matrix(factor: float) -> np.ndarray | None:
    """albumentations' hue shift as a 3x3 colour matrix, or None where it is no shift: a rotation about the
    grey axis by the angle albumentations turns hue by, 2 degrees times floor(180 * factor) (OpenCV's uint8
    hue is in 2-degree units, and albumentations truncates the shifted value).

    albumentations goes through OpenCV's HSV and back, which keeps each pixel's max and min channel; a
    rotation keeps R + G + B instead. On the real training images (hues 15-35 degrees) it turns the mean hue
    by 0.95-1.0x what albumentations does, and at the largest shift leaves HSV saturation 7/255 lower (the
    jitter's own saturation range is +-15 %); over samples the two pipelines' hue, saturation and brightness
    statistics are indistinguishable (tests/test_augment.py). The HSV round trip cost 0.22 ms of ~0.55 ms
    per 320 px sample; the matrix costs 0.02 ms."""
    units = math.floor(180 * factor)
    if units == 0:
        return None
    a = math.radians(2 * units)
    axis = np.full(3, 1 / math.sqrt(3))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return math.cos(a) * np.eye(3) + math.sin(a) * cross + (1 - math.cos(a)) * np.outer(axis, axis)


def apply_lut(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """table[image] for uint8 arrays, into a new array. StringZilla's byte translation (what albumentations
    uses) is ~10x cv2.LUT on this CPU."""
    out = np.array(image, order="C")
    # ndarray.data is memoryview(array); numpy's stubs declare ndarray a Buffer only for Python >= 3.12
    stringzilla.translate(out.reshape(-1).data, table.reshape(-1).data, inplace=True)
    return out


def _clip_u8(values: np.ndarray) -> np.ndarray:
    return np.clip(values, 0, 255).astype(np.uint8)


def albumentations_reference(seed: int = 0) -> tuple[A.Compose, A.Compose]:
    """(geometric, photometric) albumentations Composes this module reproduces: the training pipeline
    before it was rewritten for speed. Only tests and bench/data.py use it (importing albumentations costs
    ~3 s, paid by every trial process that imported it).

    Each transform gets its own seed. `Compose.set_random_seed` (and `Compose(seed=...)`) gives every
    transform a generator with the same seed (albumentations 2.0.8), so they all decide on the same
    number: TrainSet, which reseeded the Composes per sample that way, never made a mirrored image (both
    flips and the rotation came together or not at all), gamma always came with colour jitter, and its
    value followed the brightness factor."""
    import albumentations as A

    geometric = A.Compose(
        [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.Rotate(limit=30, border_mode=cv2.BORDER_REFLECT_101, p=0.5)],
        additional_targets={"teacher_logits": "image"},
    )
    photometric = A.Compose(
        [
            A.RandomGamma(gamma_limit=(80, 120), p=0.3),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.15, hue=0.02, p=0.5),
        ]
    )
    seed_reference(geometric, photometric, seed)
    return geometric, photometric


def seed_reference(geometric: A.Compose, photometric: A.Compose, seed: int) -> None:
    """Seed each transform of `albumentations_reference` on its own stream (see there why)."""
    for offset, transform in enumerate([*geometric.transforms, *photometric.transforms]):
        transform.set_random_seed(seed * 100 + offset)
