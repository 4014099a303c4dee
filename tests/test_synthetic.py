import numpy as np

from core.synthetic import render_sample, write_demo_dataset


def dataset_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_writes_identical_bytes_and_another_seed_different_images(tmp_path):
    a = dataset_bytes(write_demo_dataset(tmp_path / "a", size=32, n_train=3, n_test=1, seed=5))
    b = dataset_bytes(write_demo_dataset(tmp_path / "b", size=32, n_train=3, n_test=1, seed=5))
    c = dataset_bytes(write_demo_dataset(tmp_path / "c", size=32, n_train=3, n_test=1, seed=6))
    assert a == b
    assert a.keys() == c.keys()
    images = [name for name in a if name.endswith(".jpg")]
    assert len(images) == 3 + 5 and all(a[name] != c[name] for name in images)


def test_a_sample_does_not_depend_on_how_many_are_written(tmp_path):
    few = dataset_bytes(write_demo_dataset(tmp_path / "few", size=32, n_train=2, n_test=1, seed=0))
    many = dataset_bytes(write_demo_dataset(tmp_path / "many", size=32, n_train=5, n_test=3, seed=0))
    assert all(many[name] == data for name, data in few.items() if not name.endswith((".txt", ".json")))


def test_render_sample_is_a_function_of_the_generator_state():
    image, mask = render_sample(np.random.default_rng(3), 48)
    again_image, again_mask = render_sample(np.random.default_rng(3), 48)
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8 and mask.shape == (48, 48)
    assert set(np.unique(mask).tolist()) <= {0, 255}
    assert np.array_equal(image, again_image) and np.array_equal(mask, again_mask)
