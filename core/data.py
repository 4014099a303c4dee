"""Polyp data: discover the PraNet layout, pair images with masks, split train/val, augment and load.

`python -m core.data demo --out DIR` writes the embedded synthetic dataset (see core/synthetic.py).
Hyperparameters are chosen on a validation split carved out of TrainDataset; test sets only report.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler

from core.errors import UserError, cli_errors
from core.synthetic import SYNTHETIC_MARKER, TEST_SET_NAMES, write_demo_dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SamplePair:
    image: Path
    mask: Path

    @property
    def stem(self) -> str:
        return self.image.stem


@dataclass
class PolypData:
    """Every sample found under a data root: the training pool and the test sets present."""

    root: Path
    train: list[SamplePair]
    test_sets: dict[str, list[SamplePair]]
    missing_test_sets: list[str] = field(default_factory=list)
    synthetic: bool = False

    def describe(self) -> str:
        label = " [SYNTHETIC demo data, not real polyps]" if self.synthetic else ""
        present = ", ".join(f"{name} ({len(p)})" for name, p in self.test_sets.items()) or "none"
        text = f"data {self.root}{label}: {len(self.train)} training images; test sets: {present}"
        if self.missing_test_sets:
            text += f"; missing: {', '.join(self.missing_test_sets)}"
        return text


def find_pairs(folder: Path) -> list[SamplePair]:
    """Pair `folder/images/<stem>.*` with `folder/masks/<stem>.*`; any unpaired file is an error."""
    image_dir, mask_dir = folder / "images", folder / "masks"
    for d in (image_dir, mask_dir):
        if not d.is_dir():
            raise UserError(f"{d}: folder not found; expected {folder}/images and {folder}/masks")
    images, masks = _files_by_stem(image_dir), _files_by_stem(mask_dir)
    if not images:
        raise UserError(f"{image_dir}: no images ({', '.join(IMAGE_SUFFIXES)}); add images or fix data_root")
    for stem, path in sorted(images.items()):
        if stem not in masks:
            raise UserError(f"{path}: image has no mask {mask_dir}/{stem}.*; add the mask or remove the image")
    for stem, path in sorted(masks.items()):
        if stem not in images:
            raise UserError(f"{path}: mask has no image {image_dir}/{stem}.*; add the image or remove the mask")
    pairs = [SamplePair(images[s], masks[s]) for s in sorted(images)]
    for pair in pairs:
        _check_pair_readable(pair)
    return pairs


def discover(data_root: str | Path) -> PolypData:
    """Find TrainDataset and whichever of the five test sets exist under `data_root`."""
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: data folder not found; set data_root, or create demo data with "
                        f"`python -m core.data demo --out {root}`")
    train = find_pairs(root / "TrainDataset")
    test_sets, missing = {}, []
    for name in TEST_SET_NAMES:
        folder = root / "TestDataset" / name
        if folder.is_dir():
            test_sets[name] = find_pairs(folder)
        else:
            missing.append(name)
    return PolypData(root, train, test_sets, missing, synthetic=(root / SYNTHETIC_MARKER).exists())


def split_train_val(pairs: Sequence[SamplePair], val_fraction: float, seed: int
                    ) -> tuple[list[SamplePair], list[SamplePair]]:
    """Deterministic split: the same files, seed and fraction always give the same validation set."""
    ordered = sorted(pairs, key=lambda p: p.stem)
    if len(ordered) < 2:
        raise UserError(f"{ordered[0].image.parent if ordered else 'TrainDataset'}: need at least 2 "
                        f"training images to carve a validation split")
    n_val = min(len(ordered) - 1, max(1, round(len(ordered) * val_fraction)))
    order = np.random.default_rng(seed).permutation(len(ordered))
    val_idx = set(order[:n_val].tolist())
    train = [p for i, p in enumerate(ordered) if i not in val_idx]
    val = [p for i, p in enumerate(ordered) if i in val_idx]
    return train, val


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 HxWx3."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{path}: cannot decode image; replace or remove the file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_mask(path: Path) -> np.ndarray:
    """Binary uint8 HxW in {0, 1}; anything above half intensity is polyp (JPEG-safe)."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise UserError(f"{path}: cannot decode mask; replace or remove the file")
    return (mask > 127).astype(np.uint8)


def train_geometric() -> A.Compose:
    """Transforms that move pixels, applied jointly to image, mask and (cached) teacher logits.

    Logits are an "image" target, so they are resampled bilinearly like the image; borders are
    reflected for all three, so no constant fill has to be invented for logits or mask.
    """
    return A.Compose([
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.Rotate(limit=30, border_mode=cv2.BORDER_REFLECT_101, p=0.5),
    ], additional_targets={"teacher_logits": "image"})


def train_photometric() -> A.Compose:
    """Transforms that change colours only; applied to the image alone."""
    return A.Compose([
        A.RandomGamma(gamma_limit=(80, 120), p=0.3),
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.15, hue=0.02, p=0.5),
    ])


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 HxWx3 -> uint8 CHW. Loaders hand out uint8 and `normalize` runs on the batch, on the
    device: per-sample float conversion was the largest single cost of the cached pipeline."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B)x3xHxW -> float scaled to [0, 1] and normalised with ImageNet mean and std."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(3, 1, 1)
    return (images.float() / 255.0 - mean) / std


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffles with a seed derived from (seed, epoch) and hands the epoch to the dataset.

    Yielding `(epoch, index)` lets each sample seed its own augmentation, so a run is reproducible
    whatever the number of loader workers, and a resumed run replays the same epochs.
    """

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        for index in torch.randperm(self.size, generator=g).tolist():
            yield self.epoch, index

    def __len__(self) -> int:
        return self.size


class TrainSet(Dataset):
    """Augmented training samples from the decoded cache: (image CHW uint8, mask 1xSxS float) and, for
    cached distillation, the teacher's logits (1xSxS float) moved by the same geometric transform."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, indices: Sequence[int], seed: int,
                 teacher_logits: np.ndarray | None = None):
        self.images, self.masks, self.indices, self.seed = images, masks, list(indices), seed
        self.teacher_logits = teacher_logits
        self.geometric, self.photometric = train_geometric(), train_photometric()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        epoch, index = key
        row = self.indices[index]
        sample_seed = (self.seed * 1_000_003 + epoch * 10_007 + index) % 2**32
        self.geometric.set_random_seed(sample_seed)
        self.photometric.set_random_seed(sample_seed + 1)
        # Copies: the cache is a read-only memory map shared with other processes.
        targets = {"image": np.array(self.images[row]), "mask": np.array(self.masks[row])}
        if self.teacher_logits is not None:
            targets["teacher_logits"] = np.asarray(self.teacher_logits[row], dtype=np.float32)
        moved = self.geometric(**targets)
        image = self.photometric(image=moved["image"])["image"]
        out = (to_tensor(image), torch.from_numpy(moved["mask"]).float().unsqueeze(0))
        if self.teacher_logits is not None:
            out += (torch.from_numpy(np.ascontiguousarray(moved["teacher_logits"])).unsqueeze(0),)
        return out


class CachedEvalSet(Dataset):
    """Validation samples from the decoded cache, scored at img_size (selection only, never reported)."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, indices: Sequence[int], stems: Sequence[str]):
        self.images, self.masks, self.indices, self.stems = images, masks, list(indices), list(stems)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        row = self.indices[index]
        return (to_tensor(np.array(self.images[row])), torch.from_numpy(np.array(self.masks[row])),
                self.stems[row])


@dataclass
class EvalBatch:
    images: torch.Tensor          # B x 3 x S x S uint8, resized to img_size (see `normalize`)
    masks: list[torch.Tensor]     # each H x W at the image's original resolution
    stems: list[str]


class EvalSet(Dataset):
    """Un-augmented samples for validation and testing; masks stay at full resolution because the
    polyp benchmarks score predictions resized back to each original mask."""

    def __init__(self, pairs: Sequence[SamplePair], img_size: int):
        self.pairs, self.img_size = list(pairs), img_size

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        pair = self.pairs[index]
        image = cv2.resize(read_image(pair.image), (self.img_size, self.img_size),
                           interpolation=cv2.INTER_LINEAR)
        return to_tensor(image), torch.from_numpy(read_mask(pair.mask)), pair.stem


def collate_eval(batch: list[tuple[torch.Tensor, torch.Tensor, str]]) -> EvalBatch:
    images, masks, stems = zip(*batch)
    return EvalBatch(torch.stack(images), list(masks), list(stems))


def train_loader(dataset: TrainSet, batch_size: int, seed: int, num_workers: int) -> DataLoader:
    # drop_last avoids a 1-image final batch, whose BatchNorm statistics are degenerate.
    drop_last = len(dataset) > batch_size
    return DataLoader(dataset, batch_size=batch_size, sampler=EpochSampler(len(dataset), seed),
                      num_workers=num_workers, drop_last=drop_last,
                      persistent_workers=num_workers > 0)


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate_eval)


def _files_by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in found:
                raise UserError(f"{path}: two files share the stem '{path.stem}' in {folder}; keep one")
            found[path.stem] = path
    return found


def _image_size(path: Path) -> tuple[int, int]:
    # PIL reads only the header here: a cheap check that every file is an image, before training.
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{path}: unreadable or corrupt image ({err.__class__.__name__}); "
                        f"replace or remove the file") from None


def _check_pair_readable(pair: SamplePair) -> None:
    image_size, mask_size = _image_size(pair.image), _image_size(pair.mask)
    if image_size != mask_size:
        raise UserError(f"{pair.mask}: mask is {mask_size[0]}x{mask_size[1]} but its image {pair.image.name} is "
                        f"{image_size[0]}x{image_size[1]}; masks must have their image's size")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="write the deterministic SYNTHETIC polyp-like demo dataset")
    demo.add_argument("--out", required=True, help="folder to create (PraNet layout)")
    demo.add_argument("--size", type=int, default=64, help="image side in pixels")
    demo.add_argument("--train", type=int, default=48, help="number of training images")
    demo.add_argument("--test", type=int, default=8, help="images per test set")
    demo.add_argument("--seed", type=int, default=0)
    check = sub.add_parser("check", help="scan a data root and report what is there")
    check.add_argument("--data-root", default="dataset")
    args = parser.parse_args(argv)
    with cli_errors():
        if args.command == "demo":
            if args.size < 32 or args.train < 2 or args.test < 1:
                raise UserError("demo: need --size >= 32, --train >= 2, --test >= 1")
            try:
                out = write_demo_dataset(args.out, size=args.size, n_train=args.train,
                                         n_test=args.test, seed=args.seed)
            except FileExistsError as err:
                raise UserError(f"{args.out}: {err}; choose another --out or delete it") from None
            print(f"wrote SYNTHETIC demo data (not real polyps) to {out}: {args.train} train, "
                  f"{args.test} per test set, {args.size}px, seed {args.seed}")
        else:
            print(discover(args.data_root).describe())


if __name__ == "__main__":
    main()
