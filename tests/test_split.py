"""core/split.py: random and grouped validation splits (names, near-duplicate images, a val_groups CSV),
the `core.data split` command, and the teacher-split check."""

import cv2
import numpy as np
import pytest
from conftest import tiny_config

from core import split as split_module
from core.checkpoint import load_checkpoint
from core.config import config_from_dict
from core.data import find_pairs
from core.data import main as data_cli
from core.errors import UserError
from core.split import (
    DUPLICATE_CORRELATION,
    SEQUENCE_SIMILARITY,
    LinkFeatures,
    check_teacher_split,
    content_groups,
    csv_groups,
    frame_groups,
    image_signatures,
    image_thumbnails,
    read_val_groups,
    source_of,
    split_pairs,
    split_record,
    split_stems,
)

# PraNet's ClinicDB training frames: consecutive numbers are one video's neighbouring frames, and the
# gaps are where its test frames were taken out. Kvasir names are hashes: each its own group.
CLINIC = [f"clinicdb-{n}" for n in [1, 2, 3, 4, 7, 8, 9, 15, 16, 30, 31, 32, 33, 50]]
KVASIR = ["kvasir-cju0qkwl35piu0993l0dewei2", "kvasir-cju0roawvklrq0799vmjorwfv", "kvasir-abc"]

# A planted TrainDataset: one clip panning across a scene (frame 4 went to the test set), a cut to another
# scene, one picture saved under three unrelated names, and unrelated pictures.
PANNING_CLIP = ["clip-1", "clip-2", "clip-3", "clip-5", "clip-6"]
AFTER_CUT = ["clip-7", "clip-8"]
SAME_PICTURE = ["kvasir-cju1aaa", "kvasir-cju9zzz", "other-photo"]
UNRELATED = [f"solo-{letter}" for letter in "abcdefghijkl"]


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    noise = rng.normal(0, 1, (size, size)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 4)
    return smooth / smooth.std()


def _grey_to_rgb8(values: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(128 + 40 * values, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A PraNet TrainDataset folder of 64 px PNG frames with the groups above planted in it."""
    root = tmp_path_factory.mktemp("planted") / "TrainDataset"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    frames = {}
    scene = _texture(rng, 96)
    for stem in PANNING_CLIP:  # the camera pans 2 px per frame number over one scene
        x = 2 * int(stem.split("-")[1])
        frames[stem] = scene[16:80, x : x + 64] + rng.normal(0, 0.05, (64, 64))
    other_scene = _texture(rng, 64)
    for stem in AFTER_CUT:
        frames[stem] = other_scene + rng.normal(0, 0.05, (64, 64))
    picture = _texture(rng, 64)
    for stem in SAME_PICTURE:
        frames[stem] = picture + rng.normal(0, 0.02, (64, 64))
    for stem in UNRELATED:
        frames[stem] = _texture(rng, 64)
    for stem, values in frames.items():
        cv2.imwrite(str(root / "images" / f"{stem}.png"), _grey_to_rgb8(values))
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), np.zeros((64, 64), np.uint8))
    return root.parent


def _sets(groups):
    return {frozenset(g) for g in groups}


def test_consecutive_frames_form_one_group_and_gaps_split_videos_by_name():
    groups = frame_groups(CLINIC + KVASIR)
    clinic_groups = [g for g in groups if g[0].startswith("clinicdb")]
    assert sorted(map(sorted, clinic_groups)) == sorted(
        map(
            sorted,
            [
                ["clinicdb-1", "clinicdb-2", "clinicdb-3", "clinicdb-4"],
                ["clinicdb-7", "clinicdb-8", "clinicdb-9"],
                ["clinicdb-15", "clinicdb-16"],
                ["clinicdb-30", "clinicdb-31", "clinicdb-32", "clinicdb-33"],
                ["clinicdb-50"],
            ],
        )
    )
    assert all(len(g) == 1 for g in groups if g[0].startswith("kvasir"))


def test_planted_frames_chain_across_a_gap_but_not_across_the_clip(planted, tmp_path):
    pairs = find_pairs(planted / "TrainDataset")
    signatures = image_signatures(pairs, tmp_path)
    row = {p.stem: i for i, p in enumerate(pairs)}
    clip = [row[stem] for stem in PANNING_CLIP + AFTER_CUT]
    links = LinkFeatures.of(image_thumbnails(pairs, tmp_path)[clip], clip)
    # Neighbours across the gap continue the clip; its ends are too far apart to be duplicates: the group
    # below comes from the chain, not from the all-pairs duplicate test.
    assert links.similarity(row["clip-3"], row["clip-5"]) > SEQUENCE_SIMILARITY
    assert signatures[row["clip-1"]] @ signatures[row["clip-6"]] < DUPLICATE_CORRELATION
    groups = _sets(content_groups(pairs, cache_dir=tmp_path))
    assert frozenset(PANNING_CLIP) in groups
    assert frozenset(SAME_PICTURE) in groups
    assert all(frozenset([stem]) in groups for stem in UNRELATED)


def test_a_video_cut_starts_a_new_group(planted, tmp_path):
    groups = _sets(content_groups(find_pairs(planted / "TrainDataset"), cache_dir=tmp_path))
    assert frozenset(AFTER_CUT) in groups and frozenset(PANNING_CLIP) in groups


@pytest.mark.parametrize("seed", range(8))
def test_grouped_split_keeps_each_planted_duplicate_set_on_one_side(planted, tmp_path, seed):
    pairs = find_pairs(planted / "TrainDataset")
    train, val = split_pairs(pairs, 0.3, seed, "grouped", cache_dir=tmp_path)
    train, val = {p.stem for p in train}, {p.stem for p in val}
    assert train | val == {p.stem for p in pairs} and not train & val and val
    for planted_set in (PANNING_CLIP, AFTER_CUT, SAME_PICTURE):
        assert set(planted_set) <= train or set(planted_set) <= val, planted_set


def test_grouped_split_is_deterministic_whatever_the_order_of_the_pairs(planted, tmp_path):
    pairs = find_pairs(planted / "TrainDataset")
    first = split_pairs(pairs, 0.3, 5, "grouped", cache_dir=tmp_path)
    assert split_pairs(list(reversed(pairs)), 0.3, 5, "grouped", cache_dir=tmp_path) == first


def test_signatures_are_read_once_then_from_the_cache(planted, tmp_path, monkeypatch):
    pairs = find_pairs(planted / "TrainDataset")
    first = image_signatures(pairs, tmp_path)
    reads = []
    monkeypatch.setattr(split_module, "_read_rgb", reads.append)
    again = image_signatures(list(reversed(pairs)), tmp_path)
    assert reads == [] and np.array_equal(again[::-1], first)


def test_val_groups_csv_replaces_the_found_groups(planted, tmp_path):
    pairs = find_pairs(planted / "TrainDataset")
    csv_file = tmp_path / "groups.csv"
    csv_file.write_text("stem,group\nsolo-a,left\nsolo-b,left\n\nsolo-c,right\nclip-1,right\n")
    groups = _sets(csv_groups(csv_file, [p.stem for p in pairs]))
    assert {frozenset({"solo-a", "solo-b"}), frozenset({"solo-c", "clip-1"})} <= groups
    # Stems the file does not list are their own group: the clip the content would keep whole is not.
    assert frozenset({"clip-2"}) in groups and frozenset({"kvasir-cju1aaa"}) in groups
    for seed in range(6):
        _, val = split_pairs(pairs, 0.3, seed, "grouped", val_groups=csv_file, cache_dir=tmp_path)
        val = {p.stem for p in val}
        assert len(val & {"solo-a", "solo-b"}) in (0, 2) and len(val & {"solo-c", "clip-1"}) in (0, 2)


def test_val_groups_stems_that_name_no_image_are_an_error_naming_them(planted, tmp_path):
    pairs = find_pairs(planted / "TrainDataset")
    csv_file = tmp_path / "groups.csv"
    csv_file.write_text("stem,group\nsolo-a.png,left\nsolo-b.png,left\nsolo-c,right\n")
    with pytest.raises(UserError) as info:
        split_pairs(pairs, 0.3, 0, "grouped", val_groups=csv_file, cache_dir=tmp_path)
    assert str(info.value) == (
        f"{csv_file}: 2 of 3 stems name no training image: 'solo-a.png', 'solo-b.png'; write stems without the "
        f"file extension"
    )
    csv_file.write_text("solo-a,left\nsolo-aa,left\n")
    with pytest.raises(UserError, match=r"1 of 2 stems name no training image: 'solo-aa'; list only"):
        csv_groups(csv_file, [p.stem for p in pairs])


def test_val_groups_with_a_random_split_is_refused_not_ignored(tmp_path):
    with pytest.raises(UserError, match=r"val_groups: must be null unless val_split is grouped \(a random split"):
        config_from_dict({"val_groups": str(tmp_path / "g.csv")})
    assert config_from_dict({"val_groups": str(tmp_path / "g.csv"), "val_split": "grouped"}).val_groups


def test_malformed_val_groups_line_is_named(tmp_path):
    csv_file = tmp_path / "groups.csv"
    csv_file.write_text("stem,group\nsolo-a,left\nsolo-b\n")
    with pytest.raises(UserError, match=r"groups\.csv, line 3: .*stem,group"):
        csv_groups(csv_file, ["solo-a", "solo-b"])
    csv_file.write_text("solo-a,left\nsolo-a,right\n")
    with pytest.raises(UserError, match=r"groups\.csv, line 2: stem 'solo-a' is already in group 'left'"):
        csv_groups(csv_file, ["solo-a"])


def test_a_missing_val_groups_file_is_named_when_the_split_is_built(tmp_path):
    # Not when a config is read: an exported model trained with val_groups still loads without the file.
    cfg = config_from_dict({"val_groups": str(tmp_path / "nowhere.csv"), "val_split": "grouped"})
    with pytest.raises(UserError, match=r"nowhere\.csv: val_groups file not readable"):
        csv_groups(cfg.val_groups, ["a", "b"])


def test_split_command_writes_the_validation_stems_training_uses(demo_root, tmp_path, capsys):
    from core.train import Trainer

    cfg = tiny_config(demo_root, tmp_path, epochs=1, val_split="grouped", split_seed=3)
    trainer = Trainer(cfg)
    for _ in trainer.epochs():
        pass
    state = load_checkpoint(trainer.save_best(tmp_path / "run" / "best.pt"))
    out = tmp_path / "val.txt"
    data_cli(
        [
            "split",
            "--data-root",
            str(demo_root),
            "--val-split",
            "grouped",
            "--val-fraction",
            str(cfg.val_fraction),
            "--split-seed",
            "3",
            "--out",
            str(out),
        ]
    )
    stems = out.read_text().splitlines()
    record = split_record(demo_root, stems, cfg.val_fraction, 3, "grouped", state["split"]["n_train"])
    assert stems and record["val_sha256"] == state["split"]["val_sha256"]
    assert f"{len(stems)} validation" in capsys.readouterr().out


@pytest.mark.parametrize("seed", range(5))
def test_grouped_split_keeps_every_group_whole(seed):
    stems = CLINIC + KVASIR
    groups = frame_groups(stems)
    train, val = split_stems(stems, 0.3, seed, "grouped", groups)
    assert set(train) | set(val) == set(stems) and not set(train) & set(val) and val
    for group in groups:
        assert set(group) <= set(train) or set(group) <= set(val), group


def test_random_split_is_deterministic_and_depends_on_the_seed():
    stems = [f"img{i:03d}x" for i in range(40)]
    assert split_stems(stems, 0.25, 7) == split_stems(list(reversed(stems)), 0.25, 7)
    assert split_stems(stems, 0.25, 7)[1] != split_stems(stems, 0.25, 8)[1]
    assert len(split_stems(stems, 0.25, 7)[1]) == 10


def test_grouped_split_refuses_groups_that_hold_every_image():
    stems = [f"frame{i}" for i in range(10)]
    with pytest.raises(UserError, match="one group"):
        split_stems(stems, 0.2, 0, "grouped", [stems])


def test_teacher_trained_on_another_split_is_refused():
    student = split_record("/d", ["a", "b"], 0.1, 42, "grouped", 10)
    check_teacher_split(split_record("/d", ["b", "a"], 0.1, 42, "grouped", 10), student, "t.pt")
    with pytest.raises(UserError, match=r"different split.*students' validation images"):
        check_teacher_split(split_record("/d", ["a", "c"], 0.1, 42, "random", 10), student, "t.pt")
    with pytest.raises(UserError, match="records no training split"):
        check_teacher_split(None, student, "t.pt")


def _octagon_border(size: int) -> np.ndarray:
    """True outside an octagon whose corners are cut at a quarter of the side: ClinicDB's black frame."""
    yy, xx = np.mgrid[:size, :size]
    cut = size // 4
    return (xx + yy < cut) | (xx - yy > size - cut) | (yy - xx > size - cut) | (xx + yy > 2 * size - cut)


def test_a_cut_between_two_videos_sharing_a_black_border_is_found(tmp_path):
    # Two videos of the same colouring, each panning 1 px per frame over its own scene, inside the same black
    # octagon: the border alone made the old grey correlation link them; the link similarity takes the
    # source's shared look out.
    root = tmp_path / "TrainDataset"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    border = _octagon_border(64)
    tint = np.array([1.0, 0.6, 0.4])  # an orange mucosa colour for both videos
    for first in (1, 7):
        scene = _texture(rng, 96)
        for k in range(6):
            grey = np.clip(140 + 35 * scene[16:80, k : k + 64], 0, 255)
            frame = (grey[..., None] * tint).astype(np.uint8)
            frame[border] = 0
            stem = f"endo-{first + k}"
            cv2.imwrite(str(root / "images" / f"{stem}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(root / "masks" / f"{stem}.png"), np.zeros((64, 64), np.uint8))
    pairs = find_pairs(root)
    row = {p.stem: i for i, p in enumerate(pairs)}
    signatures = image_signatures(pairs, tmp_path)
    assert signatures[row["endo-6"]] @ signatures[row["endo-7"]] > 0.6  # the old measure's threshold: linked
    links = LinkFeatures.of(image_thumbnails(pairs, tmp_path), list(range(len(pairs))))
    assert links.similarity(row["endo-6"], row["endo-7"]) < SEQUENCE_SIMILARITY
    assert _sets(content_groups(pairs, cache_dir=tmp_path)) == {
        frozenset(f"endo-{n}" for n in range(1, 7)),
        frozenset(f"endo-{n}" for n in range(7, 13)),
    }


def _planted_sources() -> tuple[list[str], list[list[str]]]:
    """A video source of 20 videos of 5-40 frames (400 frames) and a photo source of 600 single images,
    and their groups."""
    rng = np.random.default_rng(3)
    groups, frame = [], 1
    for length in rng.integers(5, 41, size=20).tolist():
        groups.append([f"video-{n}" for n in range(frame, frame + length)])
        frame += length
    groups += [[f"photo-{i:04d}"] for i in range(600)]
    return [s for g in groups for s in g], groups


@pytest.mark.parametrize("val_fraction", [0.1, 0.2])
def test_grouped_split_gives_each_source_its_share_over_seeds(val_fraction):
    stems, groups = _planted_sources()
    n_video = sum(s.startswith("video") for s in stems)
    for seed in range(20):
        train, val = split_stems(stems, val_fraction, seed, "grouped", groups)
        assert abs(len(val) - val_fraction * len(stems)) <= 0.1 * val_fraction * len(stems), (seed, len(val))
        video_share = sum(s.startswith("video") for s in val) / len(val)
        assert abs(video_share - n_video / len(stems)) <= 0.10, (seed, video_share)
        for group in groups:
            assert set(group) <= set(train) or set(group) <= set(val)


def test_the_source_comes_from_the_name_or_the_val_groups_file(tmp_path):
    assert source_of("clinicdb-12") == "clinicdb" and source_of("kvasir_cju0") == "kvasir"
    assert source_of("cju0qkwl35piu") == "other"
    assert source_of("A12-frame", r"^(?P<source>[A-Z])") == "A"
    csv_file = tmp_path / "groups.csv"
    csv_file.write_text("stem,group,source\nclinicdb-1,v1,hospital-a\nclinicdb-2,v1,hospital-a\nkvasir-x,k\n")
    assert read_val_groups(csv_file) == (
        {"clinicdb-1": "v1", "clinicdb-2": "v1", "kvasir-x": "k"},
        {"clinicdb-1": "hospital-a", "clinicdb-2": "hospital-a"},
    )
    # The file's sources decide the strata: here every stem is of one source, so the split is that source's
    # share of the whole, whatever the names say.
    stems = [f"clinicdb-{i}" for i in range(40)] + [f"kvasir-{i}" for i in range(10)]
    sources = dict.fromkeys(stems, "one")
    for seed in range(5):
        _, val = split_stems(stems, 0.2, seed, "grouped", [[s] for s in stems], sources)
        assert len(val) == 10
