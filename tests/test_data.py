import filecmp
import shutil

import cv2
import numpy as np
import pytest
import torch
from conftest import REAL_DATA

from core.cache import decoded_samples
from core.data import TrainSet, discover, find_pairs, read_mask, split_train_val
from core.errors import UserError
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
    assert [(p.image.name, p.mask.name) for p in pairs] == [("a.jpg", "a.png"), ("b.PNG", "b.tif"),
                                                            ("c.bmp", "c.png")]


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
    train_a, val_a = split_train_val(pairs, 0.25, seed=7)
    train_b, val_b = split_train_val(list(reversed(pairs)), 0.25, seed=7)
    assert val_a == val_b and train_a == train_b
    assert len(val_a) == 4 and not set(val_a) & set(train_a)
    assert set(val_a) != set(split_train_val(pairs, 0.25, seed=8)[1])


def test_demo_data_is_deterministic_and_labelled_synthetic(tmp_path):
    a = write_demo_dataset(tmp_path / "a", size=32, n_train=4, n_test=2, seed=3)
    b = write_demo_dataset(tmp_path / "b", size=32, n_train=4, n_test=2, seed=3)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 1 + 2 * 4 + 5 * 2 * 2
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
