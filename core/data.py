"""Polyp data: discover the PraNet layout, pair images with masks, split train/val, augment and load.

`python -m core.data demo --out DIR` writes the embedded synthetic dataset (see core/synthetic.py);
`python -m core.data check --data-root D` decodes every file and reports what it found;
`python -m core.data split --data-root D --out FILE` writes the validation stems training will use.
Hyperparameters are chosen on a validation split carved out of TrainDataset; test sets only report.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from core import augment, image_files
from core.config import config_from_dict
from core.errors import UserError, cli_errors
from core.files import OutputKind, check_output, write_failure, write_file_atomic
from core.split import VAL_SPLITS, training_split
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
        train = f"{len(self.train)} training images; " if self.train else ""
        text = f"data {self.root}{label}: {train}test sets: {present}"
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
    """Find TrainDataset (required: what training reads) and every test set under `data_root`."""
    root = _data_root(data_root)
    train = find_pairs(root / "TrainDataset")
    test_sets, missing = _find_test_sets(root)
    return PolypData(root, train, test_sets, missing, synthetic=(root / SYNTHETIC_MARKER).exists())


def discover_test_sets(data_root: str | Path) -> PolypData:
    """Every test set under `data_root`/TestDataset, without needing a TrainDataset (evaluation)."""
    root = _data_root(data_root)
    test_sets, missing = _find_test_sets(root)
    if not test_sets:
        raise UserError(
            f"{root / 'TestDataset'}: no test sets found; expected {root}/TestDataset/<name>/"
            f"{{images,masks}}, or pass one folder with --test-dir"
        )
    return PolypData(root, [], test_sets, missing, synthetic=(root / SYNTHETIC_MARKER).exists())


def single_test_set(folder: str | Path) -> PolypData:
    """One folder holding images/ and masks/, as a single test set named after the folder."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"{folder}: test folder not found; pass a folder holding images/ and masks/")
    folder = folder.resolve()  # so that "." still has a name
    # The demo data marks its root; a test folder sits two levels below it (TestDataset/<name>).
    synthetic = any((d / SYNTHETIC_MARKER).exists() for d in (folder, folder.parent, folder.parent.parent))
    return PolypData(folder, [], {folder.name: find_pairs(folder)}, [], synthetic=synthetic)


def _data_root(data_root: str | Path) -> Path:
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise UserError(
            f"{root}: data folder not found; set data_root, or create demo data with "
            f"`python -m core.data demo --out {root}`"
        )
    return root


def _find_test_sets(root: Path) -> tuple[dict[str, list[SamplePair]], list[str]]:
    """The standard test sets present in benchmark order, then any other folder under TestDataset by
    name (scored too, under its folder name); and the standard ones missing."""
    base = root / "TestDataset"
    found = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")) if base.is_dir() else []
    names = [n for n in TEST_SET_NAMES if n in found] + [n for n in found if n not in TEST_SET_NAMES]
    return {name: find_pairs(base / name) for name in names}, [n for n in TEST_SET_NAMES if n not in found]


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 HxWx3, every pixel decoded (a truncated file is an error, not grey; see core/image_files.py)."""
    try:
        return image_files.to_rgb8(image_files.decode(path))
    except image_files.ImageTooLargeError as err:
        raise UserError(f"{path}: {err}") from None
    except image_files.ImageFileError as err:
        raise UserError(f"{path}: truncated or corrupt image ({err}); replace or remove the file") from None


def read_mask(path: Path) -> np.ndarray:
    """Binary uint8 HxW in {0, 1}: a mask of only 0 and 1 as it is, any other polyp above half intensity.
    An empty-looking mask whose pixels are not all zero, or a colour-coded one, is an error naming the file."""
    try:
        decoded = image_files.decode(path)
    except image_files.ImageTooLargeError as err:
        raise UserError(f"{path}: {err}") from None
    except image_files.ImageFileError as err:
        raise UserError(f"{path}: truncated or corrupt mask ({err}); replace or remove the file") from None
    try:
        return image_files.to_binary_mask(decoded)
    except image_files.ImageFileError as err:
        raise UserError(f"{path}: mask not usable: {err}") from None


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 HxWx3 -> uint8 CHW. Loaders hand out uint8 and `normalize` runs on the batch, on the
    device: per-sample float conversion was the largest single cost of the cached pipeline. The planes are
    split by OpenCV, not permuted by torch: a torch copy runs on its intra-op threads, which on a busy
    machine waited ~20 ms per 320 px sample for a descheduled thread (and cv2.split is 2x numpy's transpose)."""
    return torch.from_numpy(np.stack(cv2.split(np.ascontiguousarray(image))))


def preprocess(image: np.ndarray, img_size: int) -> torch.Tensor:
    """RGB uint8 HxWx3 of any size -> uint8 3 x img_size x img_size, as evaluation and prediction see it
    (then `normalize`). One function, so a deployed model is fed exactly what it was scored on."""
    return to_tensor(cv2.resize(image, (img_size, img_size), interpolation=cv2.INTER_LINEAR))


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
    cached distillation, the teacher's logits (1xSxS float) moved by the same geometric transform.

    Augmentation (core/augment.py) is drawn from a generator seeded by (seed, epoch, index) alone."""

    def __init__(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        indices: Sequence[int],
        seed: int,
        teacher_logits: np.ndarray | None = None,
    ):
        self.images, self.masks, self.indices, self.seed = images, masks, list(indices), seed
        self.teacher_logits = teacher_logits

    def __len__(self) -> int:
        return len(self.indices)

    def params(self, epoch: int, index: int) -> augment.AugmentParams:
        return augment.sample_params(np.random.default_rng((self.seed, epoch, index)))

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        epoch, index = key
        row = self.indices[index]
        params = self.params(epoch, index)
        # The cache is a read-only memory map shared with other processes: augment never writes to its
        # inputs, and every output below is a fresh array.
        logits = None if self.teacher_logits is None else self.teacher_logits[row]
        image, mask, logits = augment.geometric(params, self.images[row], self.masks[row], logits)
        image = augment.photometric(params, image)
        out: tuple[torch.Tensor, ...] = (to_tensor(image), torch.from_numpy(mask.astype(np.float32)[None]))
        if logits is not None:
            out += (torch.from_numpy(logits[None]),)
        return out


class CachedEvalSet(Dataset):
    """Validation samples from the decoded cache, scored at img_size (selection only, never reported)."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, indices: Sequence[int], stems: Sequence[str]):
        self.images, self.masks, self.indices, self.stems = images, masks, list(indices), list(stems)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        row = self.indices[index]
        return (to_tensor(np.array(self.images[row])), torch.from_numpy(np.array(self.masks[row])), self.stems[row])


@dataclass
class EvalBatch:
    images: torch.Tensor  # B x 3 x S x S uint8, resized to img_size (see `normalize`)
    masks: list[torch.Tensor]  # each H x W at the image's original resolution
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
        image = preprocess(read_image(pair.image), self.img_size)
        return image, torch.from_numpy(read_mask(pair.mask)), pair.stem


def collate_eval(batch: list[tuple[torch.Tensor, torch.Tensor, str]]) -> EvalBatch:
    images, masks, stems = zip(*batch)
    return EvalBatch(torch.stack(images), list(masks), list(stems))


def train_loader(dataset: TrainSet, batch_size: int, seed: int, num_workers: int) -> DataLoader:
    """Every batch holds at least 2 samples (with batch_size >= 2): BatchNorm in training mode fails on a
    batch of one whose deepest feature map is 1x1 (img_size 32), and one image is no batch statistic."""
    if len(dataset) < 2:
        raise UserError(
            f"TrainDataset: {len(dataset)} image left for training after the validation split; "
            f"add training images (at least 3)"
        )
    # With more samples than one batch, every incomplete final batch is dropped (a remainder of 1
    # included); otherwise the one batch holds them all, which is at least 2.
    drop_last = len(dataset) > batch_size
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochSampler(len(dataset), seed),
        num_workers=num_workers,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
    )


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_eval)


def _files_by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in found:
                raise UserError(f"{path}: two files share the stem '{path.stem}' in {folder}; keep one")
            found[path.stem] = path
    return found


def _image_size(path: Path) -> tuple[int, int]:
    # Only the header is read here: a cheap check of every file at each run's start. Damaged pixel data
    # is found where files are decoded (`core.data check`, the decoded cache, test-set reads).
    try:
        return image_files.image_size(path)
    except image_files.ImageFileError as err:
        raise UserError(f"{path}: unreadable or corrupt image ({err}); replace or remove the file") from None


def _check_pair_readable(pair: SamplePair) -> None:
    image_size, mask_size = _image_size(pair.image), _image_size(pair.mask)
    if image_size != mask_size:
        raise UserError(
            f"{pair.mask}: mask is {mask_size[0]}x{mask_size[1]} but its image {pair.image.name} is "
            f"{image_size[0]}x{image_size[1]}; masks must have their image's size"
        )


@dataclass
class CheckReport:
    """What `core.data check` found after decoding every file."""

    files: int  # images and masks decoded, each completely
    train_foreground: float  # fraction of training mask pixels that are polyp
    empty_train_masks: int

    # Polyp masks cover 5-20 % of a frame on average (14 % on the Kvasir-SEG + CVC-ClinicDB training pool);
    # inverted masks (background white) sit near 85 %, masks misread as background at 0 %.
    PLAUSIBLE_FOREGROUND = (0.001, 0.5)

    def warning(self) -> str | None:
        low, high = self.PLAUSIBLE_FOREGROUND
        if low <= self.train_foreground <= high:
            return None
        return (
            f"warning: training masks are {100 * self.train_foreground:.1f} % polyp, outside the plausible "
            f"{100 * low:g}-{100 * high:g} %; check that masks are polyp white (255 or 1) on black background"
        )


def check_files(data: PolypData, progress: bool = False) -> CheckReport:
    """Decode every image and mask completely (discover() reads headers only) and measure the training
    masks; the first truncated, corrupt or mismatched file is a UserError naming it."""
    pairs = list(data.train) + [pair for group in data.test_sets.values() for pair in group]
    train = set(data.train)
    polyp = pixels = empty = 0
    for pair in tqdm(pairs, desc="decoding", unit="pair", disable=not progress):
        image, mask = read_image(pair.image), read_mask(pair.mask)
        if image.shape[:2] != mask.shape:
            raise UserError(
                f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                f"{pair.image.name} is {image.shape[1]}x{image.shape[0]}; masks must have their "
                f"image's size"
            )
        if pair in train:
            polyp, pixels, empty = polyp + int(mask.sum()), pixels + mask.size, empty + int(not mask.any())
    return CheckReport(2 * len(pairs), polyp / max(pixels, 1), empty)


def mask_foreground(pairs: Sequence[SamplePair]) -> tuple[float, int]:
    """(fraction of mask pixels that are polyp, number of empty masks) over `pairs`, reading masks only:
    cheap enough for every sweep's preparation."""
    polyp = pixels = empty = 0
    for pair in pairs:
        mask = read_mask(pair.mask)
        polyp, pixels, empty = polyp + int(mask.sum()), pixels + mask.size, empty + int(not mask.any())
    return polyp / max(pixels, 1), empty


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    with cli_errors():
        if args.command == "demo":
            _demo_command(args)
        elif args.command == "split":
            _split_command(args)
        else:
            data = discover(args.data_root)
            print(data.describe())
            report = check_files(data, progress=sys.stderr.isatty())
            print(
                f"decoded all {report.files} files completely; training masks: "
                f"{100 * report.train_foreground:.1f} % polyp pixels, {report.empty_train_masks} of "
                f"{len(data.train)} empty"
            )
            if report.warning():
                print(report.warning(), file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="write the deterministic SYNTHETIC polyp-like demo dataset")
    demo.add_argument("--out", required=True, help="folder to create (PraNet layout)")
    demo.add_argument("--size", type=int, default=64, help="image side in pixels")
    demo.add_argument("--train", type=int, default=48, help="number of training images")
    demo.add_argument("--test", type=int, default=8, help="images per test set")
    demo.add_argument("--seed", type=int, default=0)
    check = sub.add_parser("check", help="decode every file under a data root and report what is there")
    check.add_argument("--data-root", default="dataset")
    # Unset split options stay None, so TrainConfig's defaults apply: the split training would use.
    split = sub.add_parser("split", help="write the validation stems training would use, one per line")
    split.add_argument("--data-root", help="data root holding TrainDataset (default: TrainConfig's)")
    split.add_argument("--val-split", choices=VAL_SPLITS)
    split.add_argument("--val-fraction", type=float)
    split.add_argument("--split-seed", type=int)
    split.add_argument(
        "--val-groups", help="CSV of stem,group rows that replaces the found groups (with --val-split grouped)"
    )
    split.add_argument("--out", required=True, help="file to write the validation stems to")
    return parser


def _demo_command(args: argparse.Namespace) -> None:
    if args.size < 32 or args.train < 2 or args.test < 1:
        raise UserError("demo: need --size >= 32, --train >= 2, --test >= 1")
    out = write_demo_dataset(args.out, size=args.size, n_train=args.train, n_test=args.test, seed=args.seed)
    print(
        f"wrote SYNTHETIC demo data (not real polyps) to {out}: {args.train} train, "
        f"{args.test} per test set, {args.size}px, seed {args.seed}"
    )


def _split_command(args: argparse.Namespace) -> None:
    given = {
        "data_root": args.data_root,
        "val_split": args.val_split,
        "val_fraction": args.val_fraction,
        "split_seed": args.split_seed,
        "val_groups": args.val_groups,
    }
    cfg = config_from_dict({k: v for k, v in given.items() if v is not None}, source="core.data split")
    train = discover(cfg.data_root).train
    inputs = [("data root", cfg.data_root), *([("--val-groups file", cfg.val_groups)] if cfg.val_groups else [])]
    out = check_output(args.out, split_file_kind(train), inputs)
    split = training_split(cfg, train)
    val = [p.stem for p in split.val]
    try:
        write_file_atomic(out, "".join(f"{stem}\n" for stem in val))
    except OSError as err:
        raise (
            write_failure(err, Path(args.out))
            or UserError(f"{args.out}: cannot write it ({err.strerror}); choose another --out")
        ) from None
    largest = max(split.groups, key=len)
    print(
        f"{cfg.val_split} split of {cfg.data_root}: {len(split.groups)} groups (largest: {len(largest)} of "
        f"{len(split.train) + len(val)}, first {largest[0]}); {len(split.train)} train, {len(val)} validation "
        f"(val_fraction {cfg.val_fraction}, split_seed {cfg.split_seed}); validation stems written to {args.out}"
    )
    n_source = {
        source: sum(s == source for s in split.sources.values()) for source in sorted(set(split.sources.values()))
    }
    print(
        "by source (validation / all): "
        + ", ".join(f"{src} {split.record['val_sources'].get(src, 0)} / {n}" for src, n in n_source.items())
    )


def split_file_kind(train: Sequence[SamplePair]) -> OutputKind:
    """A split file `core.data split` wrote for this data: one stem per line, each a training image's. The
    file has no header (training and users read it as bare stems), so its content is what tells it apart."""
    stems = {pair.stem for pair in train}

    def recognise(path: Path) -> str | None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return "not a text file of image stems"
        stranger = next((line for line in lines if line not in stems), None)
        if stranger is None:
            return None
        return f"line {stranger[:40]!r} is no training image's stem of this data root"

    return OutputKind("a split file", recognise=recognise)


if __name__ == "__main__":
    main()
