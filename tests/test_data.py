import filecmp
import shutil

import cv2
import numpy as np
import pytest
import torch
from conftest import REAL_DATA

from core.cache import decoded_samples
from core.config import config_from_dict
from core.data import (
    TrainSet,
    check_files,
    discover,
    discover_test_sets,
    find_pairs,
    read_image,
    read_mask,
    train_loader,
)
from core.data import main as data_cli
from core.errors import UserError
from core.split import split_pairs
from core.synthetic import SYNTHETIC_MARKER, TEST_SET_NAMES, write_demo_dataset


def make_folder(root, stems_images, stems_masks, size=(16, 16), mask_size=None):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for name in stems_images:
        cv2.imwrite(str(root / "images" / name), np.full((*size, 3), 120, np.uint8))
    for name in stems_masks:
        cv2.imwrite(str(root / "masks" / name), np.zeros(mask_size or size, np.uint8))
    return root


def test_pairs_match_by_stem_across_extensions(tmp_path):
    folder = make_folder(tmp_path / "d", ["a.jpg", "b.PNG", "c.bmp"], ["a.png", "b.tif", "c.png"])
    pairs = find_pairs(folder)
    assert [(p.image.name, p.mask.name) for p in pairs] == [("a.jpg", "a.png"), ("b.PNG", "b.tif"), ("c.bmp", "c.png")]


def test_image_without_mask_is_named(tmp_path):
    folder = make_folder(tmp_path / "d", ["a.jpg", "b.jpg"], ["a.png"])
    with pytest.raises(UserError, match=r"b\.jpg: image has no mask"):
        find_pairs(folder)


def test_mask_without_image_is_named(tmp_path):
    folder = make_folder(tmp_path / "d", ["a.jpg"], ["a.png", "z.png"])
    with pytest.raises(UserError, match=r"z\.png: mask has no image"):
        find_pairs(folder)


def test_corrupt_image_is_named(tmp_path):
    folder = make_folder(tmp_path / "d", ["a.jpg"], ["a.png"])
    (folder / "images" / "a.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(UserError, match=r"a\.jpg: unreadable or corrupt image"):
        find_pairs(folder)


def test_mask_of_another_size_is_named(tmp_path):
    folder = make_folder(tmp_path / "d", ["a.jpg"], ["a.png"], size=(16, 16), mask_size=(8, 16))
    with pytest.raises(UserError, match=r"a\.png: mask is 16x8 but its image a\.jpg is 16x16"):
        find_pairs(folder)


def test_missing_and_empty_data_folders_are_errors(tmp_path):
    with pytest.raises(UserError, match="data folder not found"):
        discover(tmp_path / "nope")
    (tmp_path / "empty" / "TrainDataset" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "TrainDataset" / "masks").mkdir(parents=True)
    with pytest.raises(UserError, match="no images"):
        discover(tmp_path / "empty")


def test_missing_test_sets_are_reported(demo_root, tmp_path):
    root = tmp_path / "partial"
    shutil.copytree(demo_root, root)
    shutil.rmtree(root / "TestDataset" / "CVC-300")
    data = discover(root)
    assert list(data.test_sets) == [n for n in TEST_SET_NAMES if n != "CVC-300"]
    assert data.missing_test_sets == ["CVC-300"]
    assert "missing: CVC-300" in data.describe()


def test_validation_split_is_deterministic_and_disjoint(demo_root):
    pairs = discover(demo_root).train
    train_a, val_a = split_pairs(pairs, 0.25, seed=7)
    train_b, val_b = split_pairs(list(reversed(pairs)), 0.25, seed=7)
    assert val_a == val_b and train_a == train_b
    assert len(val_a) == 4 and not set(val_a) & set(train_a)
    assert set(val_a) != set(split_pairs(pairs, 0.25, seed=8)[1])


def test_demo_data_is_deterministic_and_labelled_synthetic(tmp_path):
    a = write_demo_dataset(tmp_path / "a", size=32, n_train=4, n_test=2, seed=3)
    b = write_demo_dataset(tmp_path / "b", size=32, n_train=4, n_test=2, seed=3)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 2 + 2 * 4 + 5 * 2 * 2  # the marker and the manifest of what was written (core/files.py)
    assert all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)
    assert "SYNTHETIC" in (a / SYNTHETIC_MARKER).read_text()
    assert discover(a).synthetic


def test_demo_data_has_polyps_and_empty_images(tmp_path):
    root = write_demo_dataset(tmp_path / "d", size=64, n_train=40, n_test=1, seed=0)
    fractions = [read_mask(p.mask).mean() for p in find_pairs(root / "TrainDataset")]
    assert any(f == 0 for f in fractions) and sum(f > 0 for f in fractions) >= 25


def test_augmentation_is_a_function_of_seed_epoch_and_index(demo_root, tmp_path):
    samples = decoded_samples(discover(demo_root).train, 64, tmp_path)
    rows = list(range(len(samples.stems)))
    dataset = TrainSet(samples.images, samples.masks, rows, seed=1)
    image, mask = dataset[(0, 3)]
    again_image, again_mask = TrainSet(samples.images, samples.masks, rows, seed=1)[(0, 3)]
    assert torch.equal(image, again_image) and torch.equal(mask, again_mask)
    assert image.shape == (3, 64, 64) and mask.shape == (1, 64, 64)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    others = [dataset[(epoch, 3)][0] for epoch in range(1, 6)]
    assert any(not torch.equal(image, other) for other in others)


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="real polyp data not present")
def test_real_polyp_data_pairs_and_binary_masks():
    data = discover(REAL_DATA)
    assert len(data.train) == 1450 and not data.synthetic
    assert {"Kvasir", "CVC-ClinicDB"} <= set(data.test_sets)
    assert "CVC-ColonDB" in data.missing_test_sets
    for pair in data.train[::145] + data.test_sets["Kvasir"][::25]:
        assert pair.image.stem == pair.mask.stem
        image = cv2.imread(str(pair.image))
        mask = read_mask(pair.mask)
        assert image.shape[:2] == mask.shape and set(np.unique(mask)) <= {0, 1} and mask.any()


# --- every file read completely and as meant (issue "Nothing silently wrong") ---


def disc_mask(size=32, value=255, dtype=np.uint8):
    mask = np.zeros((size, size), dtype)
    cv2.circle(mask, (size // 2, size // 2), size // 4, value, -1)
    return mask


def test_masks_stored_as_0_and_1_are_read_as_binary(tmp_path):
    cv2.imwrite(str(tmp_path / "01.png"), disc_mask(value=1))
    cv2.imwrite(str(tmp_path / "0255.png"), disc_mask(value=255))
    zero_one = read_mask(tmp_path / "01.png")
    assert zero_one.sum() > 100 and np.array_equal(zero_one, read_mask(tmp_path / "0255.png"))


def test_other_masks_are_binarised_at_half_intensity(tmp_path):
    mask = np.array([[0, 100, 127, 128, 200, 255]], np.uint8)
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    assert read_mask(tmp_path / "m.png").tolist() == [[0, 0, 0, 1, 1, 1]]


def test_all_zero_mask_is_an_empty_mask_not_an_error(tmp_path):
    cv2.imwrite(str(tmp_path / "m.png"), np.zeros((8, 8), np.uint8))
    assert not read_mask(tmp_path / "m.png").any()


@pytest.mark.parametrize("encoding", ["png16", "palette", "bilevel", "tiff", "tiff_lzw", "tiff_0_1"])
def test_mask_file_encodings_read_alike(tmp_path, encoding):
    import tifffile
    from PIL import Image

    mask = disc_mask(32) > 127
    path = tmp_path / ("m.tif" if encoding.startswith("tiff") else "m.png")
    if encoding == "png16":
        cv2.imwrite(str(path), mask.astype(np.uint16) * 65535)
    elif encoding == "palette":
        Image.fromarray(mask.astype(np.uint8) * 255).convert("P").save(path)
    elif encoding == "bilevel":
        Image.fromarray(mask).save(path)
    else:
        tifffile.imwrite(
            path,
            mask.astype(np.uint8) * (1 if encoding == "tiff_0_1" else 255),
            compression="lzw" if encoding == "tiff_lzw" else None,
        )
    assert np.array_equal(read_mask(path), mask)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_mask_drawn_only_in_the_alpha_channel_is_read_from_it(tmp_path, mode):
    from PIL import Image

    disc = disc_mask(32) > 127
    colour = np.zeros((32, 32, 3 if mode == "RGBA" else 1), np.uint8)
    Image.fromarray(np.dstack([colour, disc.astype(np.uint8) * 255]), mode).save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png"), disc)


def test_alpha_is_ignored_when_the_colour_holds_the_mask_or_alpha_is_constant(tmp_path):
    from PIL import Image

    disc = disc_mask(32)
    grey = np.repeat(disc[..., None], 3, axis=2)
    # A drawn mask with an unrelated alpha (here: its inverse) is read from its colour, as before.
    Image.fromarray(np.dstack([grey, 255 - disc]), "RGBA").save(tmp_path / "colour.png")
    assert np.array_equal(read_mask(tmp_path / "colour.png"), disc > 127)
    # Black and fully opaque: an empty mask, not a drawing in the alpha channel.
    Image.fromarray(np.dstack([grey * 0, np.full((32, 32), 255, np.uint8)]), "RGBA").save(tmp_path / "empty.png")
    assert not read_mask(tmp_path / "empty.png").any()


def test_exif_rotated_photo_has_one_size_in_header_and_pixels(tmp_path):
    from PIL import Image

    image = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees, as phone pictures say
    image.save(tmp_path / "a.jpg", exif=exif.tobytes())
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((40, 20), np.uint8))  # the mask, drawn upright
    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    shutil.move(tmp_path / "a.jpg", folder / "images" / "a.jpg")
    shutil.move(tmp_path / "a.png", folder / "masks" / "a.png")
    (pair,) = find_pairs(folder)  # header sizes compared, orientation applied
    assert read_image(pair.image).shape == (40, 20, 3) == (*read_mask(pair.mask).shape, 3)


def test_mask_that_reads_empty_but_is_not_all_zero_is_named(tmp_path):
    cv2.imwrite(str(tmp_path / "dim.png"), disc_mask(value=100))  # e.g. labels stored as 100
    with pytest.raises(UserError, match=r"dim\.png: mask not usable: .*brightest is 100 of 255.*all background"):
        read_mask(tmp_path / "dim.png")


def test_colour_coded_mask_is_named(tmp_path):
    red_on_black = np.zeros((32, 32, 3), np.uint8)
    red_on_black[8:24, 8:24, 2] = 255  # BGR: red
    cv2.imwrite(str(tmp_path / "red.png"), red_on_black)
    with pytest.raises(UserError, match=r"red\.png: mask not usable: its red, green and blue channels differ"):
        read_mask(tmp_path / "red.png")


def test_grey_mask_saved_as_colour_jpeg_is_read(tmp_path):
    # JPEG moves the channels of grey pixels apart by a few levels: that is not a colour-coded mask.
    grey = disc_mask(64)
    cv2.imwrite(str(tmp_path / "m.jpg"), np.repeat(grey[..., None], 3, axis=2), [cv2.IMWRITE_JPEG_QUALITY, 60])
    mask = read_mask(tmp_path / "m.jpg")
    assert (mask != (grey > 127)).mean() < 0.02


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_image_is_an_error_not_grey(tmp_path, suffix):
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    path = tmp_path / f"cut{suffix}"
    cv2.imwrite(str(path), image)
    truncate(path)
    with pytest.raises(UserError, match=rf"cut\{suffix}: truncated or corrupt image"):
        read_image(path)
    with pytest.raises(UserError, match=rf"cut\{suffix}: truncated or corrupt mask"):
        read_mask(path)


def run_check(root, capsys):
    try:
        data_cli(["check", "--data-root", str(root)])
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    return code, out, err.strip()


def test_check_decodes_every_file_and_names_a_truncated_jpeg(demo_root, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    victim = sorted((root / "TestDataset" / "CVC-300" / "images").iterdir())[1]
    image = cv2.imread(str(victim))
    victim.unlink()
    victim = victim.with_suffix(".jpg")
    cv2.imwrite(str(victim), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    code, out, err = run_check(root, capsys)
    assert code == 0 and "decoded all" in out and not err
    truncate(victim)
    discover(root)  # reads headers only, as every run's start does: cheap, and blind to a cut body
    code, out, err = run_check(root, capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"error: {victim}: truncated or corrupt image") and "replace or remove" in err


def test_check_reports_foreground_and_warns_when_implausible(demo_root, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    masks = sorted((root / "TrainDataset" / "masks").iterdir())
    expected = np.mean([read_mask(m).mean() for m in masks])
    for path in masks:  # as many public datasets ship them: 0/1, which used to read as all background
        cv2.imwrite(str(path), read_mask(path))
    code, out, err = run_check(root, capsys)
    assert code == 0 and f"{100 * expected:.1f} % polyp pixels" in out and not err
    assert 0 < expected < 0.5
    for path in masks:  # inverted: polyp black on white
        cv2.imwrite(str(path), (1 - read_mask(path)) * 255)
    code, out, err = run_check(root, capsys)
    assert code == 0 and err.startswith("warning: training masks are") and len(err.splitlines()) == 1


def mislabelled_rgb_tiff(path, rgb):
    """RGB samples under a header that claims grey (PhotometricInterpretation MINISBLACK, SamplesPerPixel
    3), like the original CVC-ClinicDB frames."""
    import tifffile

    tifffile.imwrite(path, rgb, photometric="minisblack", planarconfig="contig")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert page.photometric == tifffile.PHOTOMETRIC.MINISBLACK and page.samplesperpixel == 3


def test_mislabelled_rgb_tiff_is_read_in_colour(tmp_path):
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 90, 30
    rgb[:12, :, 1] = 160
    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    mislabelled_rgb_tiff(folder / "images" / "a.tif", rgb)
    cv2.imwrite(str(folder / "masks" / "a.tif"), disc_mask(32)[:24])
    pairs = find_pairs(folder)  # the header check used to call this file unreadable
    assert np.array_equal(read_image(pairs[0].image), rgb)
    assert read_mask(pairs[0].mask).any()
    # A 3-channel mask under the same mislabelled header: grey as intended.
    mislabelled_rgb_tiff(tmp_path / "m.tif", np.repeat(disc_mask(32)[..., None], 3, axis=2))
    assert np.array_equal(read_mask(tmp_path / "m.tif"), disc_mask(32) > 127)


@pytest.mark.parametrize("n_train", [2, 3, 5, 9, 10])
def test_training_batches_never_hold_one_sample(demo_root, tmp_path, n_train):
    samples = decoded_samples(discover(demo_root).train, 64, tmp_path)
    loader = train_loader(
        TrainSet(samples.images, samples.masks, range(n_train), seed=0), batch_size=4, seed=0, num_workers=0
    )
    sizes = [len(batch[0]) for batch in loader]
    assert sizes and min(sizes) >= 2
    assert sum(sizes) == (n_train if n_train <= 4 else n_train - n_train % 4)


def test_a_single_training_image_is_refused(demo_root, tmp_path):
    samples = decoded_samples(discover(demo_root).train, 64, tmp_path)
    with pytest.raises(UserError, match="1 image left for training"):
        train_loader(TrainSet(samples.images, samples.masks, [0], seed=0), batch_size=4, seed=0, num_workers=0)


def test_batch_size_one_is_refused_where_batchnorm_cannot_train_it():
    from core.models import build_for_training

    values = dict(img_size=32, batch_size=1, encoder_weights=None)
    with pytest.raises(UserError, match="batch_size: must be at least 2 at img_size 32"):
        config_from_dict(values)
    # Why: at 32 px the deepest feature map is 1x1, and BatchNorm fails on one value per channel;
    # at 64 px a batch of one trains.
    model = build_for_training(config_from_dict({**values, "batch_size": 2})).train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        model(torch.zeros(1, 3, 32, 32))
    assert config_from_dict({**values, "img_size": 64}).batch_size == 1
    model(torch.zeros(1, 3, 64, 64)).sum().backward()


def test_test_sets_with_other_names_are_found_without_a_train_dataset(demo_root, tmp_path):
    root = tmp_path / "only-tests"
    shutil.copytree(demo_root / "TestDataset" / "Kvasir", root / "TestDataset" / "Kvasir")
    shutil.copytree(demo_root / "TestDataset" / "CVC-300", root / "TestDataset" / "MyHospital")
    data = discover_test_sets(root)
    assert list(data.test_sets) == ["Kvasir", "MyHospital"] and not data.train
    assert data.missing_test_sets == [n for n in TEST_SET_NAMES if n != "Kvasir"]
    with pytest.raises(UserError, match="TrainDataset"):
        discover(root)  # training still needs its TrainDataset
    with pytest.raises(UserError, match="no test sets found"):
        discover_test_sets(tmp_path)


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="real polyp data not present")
def test_real_polyp_data_decodes_completely_with_plausible_masks():
    data = discover(REAL_DATA)
    data.train = data.train[::10]  # a spread of Kvasir and CVC-ClinicDB frames keeps this quick
    report = check_files(data)
    assert report.files == 2 * (len(data.train) + sum(len(p) for p in data.test_sets.values()))
    assert 0.05 < report.train_foreground < 0.3 and report.warning() is None


def _png_declaring(path, width, height):
    """A PNG whose header declares width x height but which holds almost no pixel data (a few bytes)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def _tiff_declaring(path, width, height):
    """A small TIFF whose width and length tags are then rewritten to declare width x height."""
    import tifffile

    tifffile.imwrite(path, np.zeros((16, 16), np.uint8))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages.first.tags["ImageWidth"].overwrite(width)
        tif.pages.first.tags["ImageLength"].overwrite(height)
    return path


@pytest.mark.parametrize("write", [_png_declaring, _tiff_declaring])
def test_an_image_declaring_too_many_pixels_is_refused_before_it_is_decoded(write, tmp_path, monkeypatch):
    from core import image_files

    def never(path):
        raise AssertionError("decoded: the header check came too late")

    monkeypatch.setattr(image_files, "_decode_pil", never)
    monkeypatch.setattr(image_files, "_decode_tiff", never)
    path = write(tmp_path / f"huge{'.png' if write is _png_declaring else '.tif'}", 40000, 40000)
    assert path.stat().st_size < 10_000
    with pytest.raises(UserError) as info:
        read_image(path)
    assert str(info.value) == (
        f"{path}: its header declares 40000x40000 pixels (1600 MP), over the 50 MP limit; resize it, or raise "
        "$POLYP_KD_TUNE_MAX_MEGAPIXELS"
    )
    with pytest.raises(UserError, match="over the 50 MP limit"):
        read_mask(path)
    monkeypatch.setenv("POLYP_KD_TUNE_MAX_MEGAPIXELS", "2000")  # raised: the decoder is reached
    with pytest.raises(UserError, match="decoded: the header check came too late"):
        read_image(path)
