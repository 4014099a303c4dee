"""core/augment.py: for the same parameters it makes albumentations' images, its parameters follow the
albumentations pipeline's distribution (statistics over many samples), and TrainSet's augmentation is a
function of (seed, epoch, index) alone.

The albumentations reference seeds each transform separately (see `albumentations_reference`: seeding a
Compose, as TrainSet did per sample, made all its transforms decide on one number); the last test pins
down that the new parameters are independent."""

import dataclasses

import cv2
import numpy as np
import pytest
import torch
from albumentations.augmentations.pixel import functional as fpixel
from scipy import stats

from core import augment
from core.cache import decoded_samples
from core.data import TrainSet, discover, read_image

N_SAMPLES = 2000
# Two-sample KS tests over N_SAMPLES draws each: a p-value this small is the tests' false-alarm rate.
KS_ALPHA = 1e-4


@pytest.fixture(scope="module")
def polyp_image(demo_root) -> np.ndarray:
    """A 64 px synthetic colonoscopy frame: mucosa colours, highlights, a polyp."""
    pairs = discover(demo_root).train
    return max((read_image(p.image) for p in pairs), key=lambda im: float(im.std()))


def albumentations_geometric(params: augment.AugmentParams):
    import albumentations as A

    steps = [A.HorizontalFlip(p=1)] if params.hflip else []
    steps += [A.VerticalFlip(p=1)] if params.vflip else []
    if params.angle is not None:
        steps.append(A.Rotate(limit=(params.angle, params.angle), border_mode=cv2.BORDER_REFLECT_101, p=1))
    return A.Compose(steps, additional_targets={"teacher_logits": "image"})


def albumentations_photometric(params: augment.AugmentParams, image: np.ndarray) -> np.ndarray:
    if params.gamma is not None:
        image = fpixel.gamma_transform(image, params.gamma)
    if params.jitter is not None:
        ops = (
            fpixel.adjust_brightness_torchvision,
            fpixel.adjust_contrast_torchvision,
            fpixel.adjust_saturation_torchvision,
            fpixel.adjust_hue_torchvision,
        )
        j = params.jitter
        factors = (j.brightness, j.contrast, j.saturation, j.hue)
        for op in j.order:
            image = ops[op](image, factors[op])
    return image


def test_same_parameters_give_albumentations_images(polyp_image):
    rng = np.random.default_rng(0)
    mask = (polyp_image[..., 0] > np.median(polyp_image[..., 0])).astype(np.uint8)
    logits = ((polyp_image[..., 1].astype(np.float32) - 128) / 16).astype(np.float16)
    rotated = photometric_changes = 0
    for _ in range(300):
        params = augment.sample_params(rng)
        expected = albumentations_geometric(params)(
            image=polyp_image, mask=mask, teacher_logits=logits.astype(np.float32)
        )
        image, moved_mask, moved_logits = augment.geometric(params, polyp_image, mask, logits)
        # One warp instead of flip-then-rotate: source coordinates round to 1/32 pixel differently.
        assert np.abs(image.astype(int) - expected["image"]).max() <= 1
        assert (moved_mask != expected["mask"]).mean() <= 0.002
        assert np.abs(moved_logits - expected["teacher_logits"]).max() <= 0.02
        assert moved_logits.dtype == np.float32
        # Photometric: albumentations' own tables and operations, so the very same image; the hue shift is
        # a colour rotation instead of an HSV round trip (next test), so it is left out here.
        if params.jitter is not None:
            params = dataclasses.replace(params, jitter=dataclasses.replace(params.jitter, hue=0.0))
        ours = augment.photometric(params, expected["image"])
        assert np.array_equal(ours, albumentations_photometric(params, expected["image"]))
        rotated += params.angle is not None
        photometric_changes += not np.array_equal(ours, expected["image"])
    assert 100 < rotated < 200 and photometric_changes > 100


def hsv_of(image: np.ndarray, where: np.ndarray) -> tuple[float, float, float]:
    """Circular mean hue (degrees) and mean saturation and value (0-255) of the pixels `where`."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL).astype(float)[where]
    angle = hsv[:, 0] * 2 * np.pi / 256
    return float(np.degrees(np.arctan2(np.sin(angle).mean(), np.cos(angle).mean()))), hsv[:, 1].mean(), hsv[:, 2].mean()


def test_hue_rotation_turns_hue_as_albumentations_does(polyp_image):
    hsv = cv2.cvtColor(polyp_image, cv2.COLOR_RGB2HSV)
    coloured = hsv[..., 1] > 40  # hue means little on near-grey pixels
    assert coloured.mean() > 0.2
    base_hue, _, _ = hsv_of(polyp_image, coloured)
    for units in range(-4, 4):  # every shift hue=U(-0.02, 0.02) can give: 180 * 0.02 = 3.6 units of 2 degrees
        factor = (units + 0.5) / 180
        hue_only = augment.Jitter(brightness=1, contrast=1, saturation=1, hue=factor, order=(3, 0, 1, 2))
        ours = augment.photometric(augment.AugmentParams(False, False, None, None, hue_only), polyp_image)
        theirs = fpixel.adjust_hue_torchvision(polyp_image, factor)
        (our_hue, our_s, our_v), (their_hue, their_s, their_v) = hsv_of(ours, coloured), hsv_of(theirs, coloured)
        assert their_hue - base_hue == pytest.approx(2 * units, abs=1.0)  # what albumentations does
        # A rotation turns the HSV hue of pure reds ~1.2x faster than of oranges (hexagon vs circle): on
        # this synthetic frame 1.14x; on the real training images (hue 15-35 degrees) 0.95-1.0x (median).
        assert our_hue - base_hue == pytest.approx(their_hue - base_hue, abs=max(1.0, 0.2 * abs(2 * units)))
        # HSV saturation is (max - min) / max, which an HSV shift keeps and a rotation does not: at the largest
        # shift the real training images lose 7 of 255 (5 %) more than with albumentations, the jitter's own
        # saturation range is +-15 %.
        assert abs(our_s - their_s) < 10 and abs(our_v - their_v) < 4


def test_inputs_are_never_written(polyp_image):
    image = polyp_image.copy()
    image.setflags(write=False)  # as the cache's read-only memory map
    mask = np.zeros(image.shape[:2], np.uint8)
    mask.setflags(write=False)
    rng = np.random.default_rng(1)
    for _ in range(50):
        params = augment.sample_params(rng)
        moved, _, _ = augment.geometric(params, image, mask, np.zeros(mask.shape, np.float16))
        augment.photometric(params, moved)
    assert np.array_equal(image, polyp_image)


def marker_image(size: int = 65) -> np.ndarray:
    """Black with a red dot right of the centre and a green one above it: where they land tells the flips
    and the rotation angle. An odd size puts the centre of rotation on a pixel, so flips move the dots
    exactly onto the axes."""
    image = np.zeros((size, size, 3), np.uint8)
    c = size // 2
    cv2.circle(image, (c + size // 4, c), 3, (255, 0, 0), -1)
    cv2.circle(image, (c, c - size // 4), 3, (0, 255, 0), -1)
    return image


def pose(image: np.ndarray) -> tuple[float, float, bool]:
    """Angles (degrees, screen convention) of the red and green dots around the centre, and whether the
    image is mirrored (an odd number of flips)."""
    centre = (np.array(image.shape[:2][::-1]) - 1) / 2
    vectors = []
    for channel in (0, 1):
        ys, xs = np.nonzero(image[..., channel] > 128)
        weights = image[ys, xs, channel].astype(float)
        vectors.append(np.array([np.average(xs, weights=weights), np.average(ys, weights=weights)]) - centre)
    (rx, ry), (gx, gy) = vectors
    # Image rows grow downwards: -y makes the angles counter-clockwise on screen.
    return _angle(rx, -ry), _angle(gx, -gy), bool(rx * -gy - (-ry) * gx < 0)


def _angle(x: float, y: float) -> float:
    return float(np.degrees(np.arctan2(y, x)))


def geometric_poses(use_albumentations: bool) -> np.ndarray:
    image = marker_image()
    mask = np.zeros(image.shape[:2], np.uint8)
    geometric, _ = augment.albumentations_reference(seed=0)
    poses = []
    for seed in range(N_SAMPLES):
        if use_albumentations:
            moved = geometric(image=image, mask=mask)["image"]
        else:
            moved, _, _ = augment.geometric(augment.sample_params(np.random.default_rng(seed)), image, mask)
        poses.append(pose(moved))
    return np.array(poses)


def test_flips_and_rotation_follow_the_albumentations_distribution():
    ours, theirs = geometric_poses(False), geometric_poses(True)
    for poses in (ours, theirs):
        red, mirrored = poses[:, 0], poses[:, 2].astype(bool)
        # Rotation away from a multiple of 90 degrees (the flips'), i.e. how far Rotate turned it.
        turn = (red + 45) % 90 - 45
        rotated = np.abs(turn) > 1
        assert abs(mirrored.mean() - 0.5) < 0.04  # exactly one of the two flips: 2 x 0.25
        assert abs(rotated.mean() - 0.5) < 0.04 and np.abs(turn).max() <= 30.5
        # A rotated sample's angle is uniform on [-30, 30].
        assert stats.kstest(np.abs(turn[rotated]), stats.uniform(1, 29).cdf).pvalue > KS_ALPHA
        assert abs((turn[rotated] > 0).mean() - 0.5) < 0.06
        # Without rotation the dots sit on the axes: the four flip combinations, each 1/4.
        combination = np.round(poses[~rotated, :2] / 90) % 4 @ np.array([1, 4])
        assert sorted(np.unique(combination)) == [4, 6, 12, 14]  # red right/left x green up/down
        assert all(abs((combination == c).mean() - 0.25) < 0.05 for c in (4, 6, 12, 14))
    for column in (0, 1):  # the two dots' angle distributions, ours against albumentations'
        assert stats.ks_2samp(ours[:, column], theirs[:, column]).pvalue > KS_ALPHA
    assert abs(ours[:, 2].mean() - theirs[:, 2].mean()) < 0.05


def test_parameter_values_follow_albumentations_draws():
    geometric, photometric = augment.albumentations_reference(seed=1)
    rotate = geometric.transforms[2]
    gamma, jitter = photometric.transforms
    theirs = {"angle": [], "gamma": [], "brightness": [], "contrast": [], "saturation": [], "hue": []}
    for _ in range(N_SAMPLES):
        matrix = rotate.get_params_dependent_on_data({"shape": (64, 64)}, {})["matrix"]
        theirs["angle"].append(np.degrees(np.arctan2(matrix[0, 1], matrix[0, 0])))
        theirs["gamma"].append(gamma.get_params_dependent_on_data({}, {})["gamma"])
        for name, value in jitter.get_params().items():
            if name != "order":
                theirs[name].append(value)
    drawn = [augment.sample_params(np.random.default_rng(seed)) for seed in range(3 * N_SAMPLES)]
    ours = {
        "angle": [p.angle for p in drawn if p.angle is not None],
        "gamma": [p.gamma for p in drawn if p.gamma is not None],
    }
    for name in ("brightness", "contrast", "saturation", "hue"):
        ours[name] = [getattr(p.jitter, name) for p in drawn if p.jitter is not None]
    for name, values in theirs.items():
        assert stats.ks_2samp(ours[name], values).pvalue > KS_ALPHA, name


def test_each_transform_is_drawn_independently():
    params = [augment.sample_params(np.random.default_rng(seed)) for seed in range(N_SAMPLES)]
    hflip, vflip = np.array([p.hflip for p in params]), np.array([p.vflip for p in params])
    rotated = np.array([p.angle is not None for p in params])
    gamma = np.array([p.gamma is not None for p in params])
    jitter = np.array([p.jitter is not None for p in params])
    assert abs((hflip & vflip).mean() - 0.25) < 0.03 and abs((hflip & ~vflip).mean() - 0.25) < 0.03
    assert abs((hflip & rotated).mean() - 0.25) < 0.03
    assert abs((gamma & jitter).mean() - 0.15) < 0.03 and abs((gamma & ~jitter).mean() - 0.15) < 0.03
    both = [p for p in params if p.gamma is not None and p.jitter is not None]
    assert abs(np.corrcoef([p.gamma for p in both], [p.jitter.brightness for p in both])[0, 1]) < 0.25
    orders = {p.jitter.order for p in params if p.jitter is not None}
    assert len(orders) == 24  # every order of the four jitter operations occurs


def colour_statistics(images: list[np.ndarray]) -> np.ndarray:
    """Per image: mean grey level (brightness), its standard deviation (contrast), mean HSV saturation,
    mean hue of the saturated pixels."""
    rows = []
    for image in images:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(float)
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(float)
        coloured = hsv[..., 1] > 60
        hue = ((hsv[..., 0][coloured] + 90) % 180).mean()  # the mucosa's reds sit around 0/180: unwrap them
        rows.append((grey.mean(), grey.std(), hsv[..., 1].mean(), hue))
    return np.array(rows)


def test_photometric_changes_follow_the_albumentations_distribution(polyp_image):
    _, photometric = augment.albumentations_reference(seed=0)
    theirs, ours = [], []
    for seed in range(N_SAMPLES):
        theirs.append(photometric(image=polyp_image)["image"])
        ours.append(augment.photometric(augment.sample_params(np.random.default_rng(seed)), polyp_image))
    unchanged = [np.mean([np.array_equal(im, polyp_image) for im in images]) for images in (ours, theirs)]
    # Neither gamma (p 0.3) nor jitter (p 0.5) drawn: 0.7 x 0.5.
    assert all(abs(u - 0.35) < 0.04 for u in unchanged)
    a, b = colour_statistics(ours), colour_statistics(theirs)
    for column in range(a.shape[1]):
        assert stats.ks_2samp(a[:, column], b[:, column]).pvalue > KS_ALPHA, column
    # The jitter's spread is visible, not only its presence: brightness moves by up to +-20 %.
    assert np.percentile(a[:, 0], 99) > 1.1 * a[:, 0].mean() and np.percentile(a[:, 0], 1) < 0.9 * a[:, 0].mean()


def test_train_set_augmentation_is_a_function_of_seed_epoch_and_index(demo_root, tmp_path):
    samples = decoded_samples(discover(demo_root).train, 64, tmp_path)
    rows = list(range(len(samples.stems)))
    logits = (samples.masks.astype(np.float16) - 0.5) * 8
    first = TrainSet(samples.images, samples.masks, rows, seed=3, teacher_logits=logits)
    second = TrainSet(samples.images, samples.masks, rows, seed=3, teacher_logits=logits)  # another worker
    keys = [(epoch, index) for epoch in range(3) for index in range(len(rows))]
    forward = {key: first[key] for key in keys}
    backward = {key: second[key] for key in reversed(keys)}  # any order, any process: the same samples
    for key in keys:
        assert all(torch.equal(x, y) for x, y in zip(forward[key], backward[key]))
    image, mask, moved = forward[(0, 0)]
    assert image.dtype == torch.uint8 and image.shape == (3, 64, 64)
    assert mask.dtype == torch.float32 and mask.shape == (1, 64, 64) and moved.dtype == torch.float32
    for index in range(len(rows)):
        epochs = [forward[(epoch, index)][0] for epoch in range(3)]
        assert not all(torch.equal(epochs[0], other) for other in epochs[1:])
    other_seed = TrainSet(samples.images, samples.masks, rows, seed=4)
    assert sum(not torch.equal(forward[(0, i)][0], other_seed[(0, i)][0]) for i in rows) > len(rows) // 2
    assert first.params(1, 2) == second.params(1, 2) != first.params(2, 1)
