import os
import threading

import numpy as np
import pytest
import torch

from core import cache
from core.cache import decoded_samples, samples_key, teacher_logits
from core.data import TrainSet, discover, normalize, read_image, to_tensor
from core.errors import UserError
from core.models import load_frozen_teacher


@pytest.fixture()
def pairs(demo_root):
    return discover(demo_root).train


def test_decoded_cache_holds_resized_images_and_binary_masks(pairs, tmp_path):
    samples = decoded_samples(pairs, 64, tmp_path)
    assert samples.images.shape == (len(pairs), 64, 64, 3) and samples.images.dtype == np.uint8
    assert set(np.unique(samples.masks)) <= {0, 1}
    first = sorted(pairs, key=lambda p: p.stem)[0]
    assert np.array_equal(samples.images[0], read_image(first.image))  # demo images are 64 px already
    assert isinstance(samples.images, np.memmap)


def test_cached_logits_equal_a_fresh_teacher_forward(pairs, tmp_path, teacher_checkpoint):
    samples = decoded_samples(pairs, 64, tmp_path)
    logits = teacher_logits(teacher_checkpoint, samples, tmp_path, torch.device("cpu"), batch_size=4)
    assert logits.dtype == np.float16 and logits.shape == (len(pairs), 64, 64)
    teacher = load_frozen_teacher(str(teacher_checkpoint), torch.device("cpu"))
    with torch.no_grad():
        batch = torch.stack([to_tensor(np.array(samples.images[i])) for i in (0, 5)])
        fresh = teacher(normalize(batch))[:, 0].numpy()
    cached = logits[[0, 5]].astype(np.float32)
    # fp16 keeps ~3 significant digits.
    assert np.allclose(cached, fresh, rtol=2e-3, atol=2e-3)


def test_geometric_augmentation_keeps_logits_aligned_with_the_mask(pairs, tmp_path):
    samples = decoded_samples(pairs, 64, tmp_path)
    # Stand-in logits that encode the mask: after any joint transform, their sign must still be the mask.
    fake = (samples.masks.astype(np.float16) * 2 - 1) * 8
    dataset = TrainSet(samples.images, samples.masks, range(len(pairs)), seed=0, teacher_logits=fake)
    agreement, moved = [], 0
    for epoch in range(4):
        for index in range(len(pairs)):
            _, mask, logits = dataset[(epoch, index)]
            agreement.append(((logits > 0).float() == mask).float().mean().item())
            moved += int(not np.array_equal(mask[0].numpy(), samples.masks[index]))
    assert moved > 0
    # Bilinear logits and nearest-neighbour masks may differ only on boundary pixels.
    assert min(agreement) > 0.97 and np.mean(agreement) > 0.99


def test_cache_key_changes_with_any_input(pairs, tmp_path):
    key = samples_key(pairs, 64)
    assert samples_key(pairs, 64) == key
    assert samples_key(pairs, 96) != key
    assert samples_key(pairs[:-1], 64) != key
    stat = pairs[0].image.stat()
    os.utime(pairs[0].image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    try:
        assert samples_key(pairs, 64) != key
    finally:
        os.utime(pairs[0].image, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_another_teacher_gets_another_logits_cache(pairs, tmp_path, teacher_checkpoint):
    samples = decoded_samples(pairs, 64, tmp_path)
    teacher_logits(teacher_checkpoint, samples, tmp_path, torch.device("cpu"))
    state = torch.load(teacher_checkpoint, weights_only=True)
    state["epoch"] = 99
    other = tmp_path / "other_teacher.pt"
    torch.save(state, other)
    teacher_logits(other, samples, tmp_path, torch.device("cpu"))
    assert len(list((tmp_path / "teacher_logits").glob("*/logits.npy"))) == 2
    teacher_logits(other, samples, tmp_path, torch.device("cpu"))
    assert len(list((tmp_path / "teacher_logits").glob("*/logits.npy"))) == 2


def test_concurrent_builders_decode_each_file_once(pairs, tmp_path, monkeypatch):
    calls = []
    real = cache.read_image
    monkeypatch.setattr(cache, "read_image", lambda path: calls.append(path) or real(path))
    threads = [threading.Thread(target=decoded_samples, args=(pairs, 64, tmp_path)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == len(pairs)
    assert [p.name for p in (tmp_path / "decoded").iterdir() if p.is_dir()] == [samples_key(pairs, 64)]


def cut_in_half(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_decoded_cache_is_rebuilt_with_one_line(pairs, tmp_path, capsys):
    samples = decoded_samples(pairs, 64, tmp_path)
    images, masks = np.array(samples.images), np.array(samples.masks)
    del samples  # release the memory map before cutting its file
    folder = tmp_path / "decoded" / samples_key(pairs, 64)
    cut_in_half(folder / "images.npy")
    capsys.readouterr()
    again = decoded_samples(pairs, 64, tmp_path)  # used to raise "mmap length is greater than file size"
    err = capsys.readouterr().err.strip()
    assert err == (
        f"cache {folder}: images.npy is {images.nbytes // 2 + 64} bytes but was "
        f"{images.nbytes + 128} when built; rebuilding it"
    )
    assert np.array_equal(again.images, images) and np.array_equal(again.masks, masks)
    decoded_samples(pairs, 64, tmp_path)
    assert capsys.readouterr().err == ""  # intact again: mapped, not rebuilt


def test_truncated_logits_cache_is_rebuilt(pairs, tmp_path, teacher_checkpoint, capsys):
    samples = decoded_samples(pairs, 64, tmp_path)
    logits = np.array(teacher_logits(teacher_checkpoint, samples, tmp_path, torch.device("cpu")))
    (path,) = (tmp_path / "teacher_logits").glob("*/logits.npy")
    cut_in_half(path)
    capsys.readouterr()
    again = teacher_logits(teacher_checkpoint, samples, tmp_path, torch.device("cpu"))
    assert "logits.npy is" in capsys.readouterr().err and np.array_equal(again, logits)


def test_overwritten_cache_file_of_the_same_size_is_rebuilt(pairs, tmp_path, capsys):
    samples = decoded_samples(pairs, 64, tmp_path)
    images = np.array(samples.images)
    path = samples.folder / "images.npy"
    del samples
    path.write_bytes(bytes(path.stat().st_size))
    again = decoded_samples(pairs, 64, tmp_path)
    assert "images.npy differs from what was built" in capsys.readouterr().err
    assert np.array_equal(again.images, images)


def test_a_truncated_training_image_fails_the_cache_build_by_name(pairs, tmp_path):
    import shutil

    victim = tmp_path / "cut.png"
    shutil.copy(pairs[3].image, victim)
    cut_in_half(victim)
    broken = [p if i != 3 else type(p)(victim, p.mask) for i, p in enumerate(pairs)]
    with pytest.raises(UserError, match=r"cut\.png: truncated or corrupt image"):
        decoded_samples(broken, 64, tmp_path / "cache")
    # Nothing half-built is left to be mapped later, and the lock is free for the next build.
    assert [p.name for p in (tmp_path / "cache" / "decoded").iterdir() if p.is_dir()] == []
    assert decoded_samples(pairs, 64, tmp_path / "cache").images.shape[0] == len(pairs)


def test_a_cache_larger_than_the_free_disk_is_one_error_before_anything_is_allocated(pairs, tmp_path, monkeypatch):
    class Tiny:
        free = 1000  # bytes

    monkeypatch.setattr(cache.shutil, "disk_usage", lambda path: Tiny)
    monkeypatch.setattr(cache.np.lib.format, "open_memmap", lambda *a, **k: pytest.fail("allocated"))
    with pytest.raises(
        UserError, match=r"the cache of decoded images \(\d+ at 64px\) needs 0\.\d MB and its disk has 0\.0 MB free"
    ):
        decoded_samples(pairs, 64, tmp_path)
    assert not list((tmp_path / "decoded").glob("*/images.npy"))
