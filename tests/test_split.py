"""core/split.py: random and grouped validation splits, and the teacher-split check."""
import pytest

from core.errors import UserError
from core.split import check_teacher_split, frame_groups, split_record, split_stems

# PraNet's ClinicDB training frames: consecutive numbers are one video's neighbouring frames, and the
# gaps are where its test frames were taken out. Kvasir names are hashes: each its own group.
CLINIC = [f"clinicdb-{n}" for n in [1, 2, 3, 4, 7, 8, 9, 15, 16, 30, 31, 32, 33, 50]]
KVASIR = ["kvasir-cju0qkwl35piu0993l0dewei2", "kvasir-cju0roawvklrq0799vmjorwfv", "kvasir-abc"]


def test_consecutive_frames_form_one_group_and_gaps_split_videos():
    groups = frame_groups(CLINIC + KVASIR)
    clinic_groups = [g for g in groups if g[0].startswith("clinicdb")]
    assert sorted(map(sorted, clinic_groups)) == sorted(map(sorted, [
        ["clinicdb-1", "clinicdb-2", "clinicdb-3", "clinicdb-4"], ["clinicdb-7", "clinicdb-8", "clinicdb-9"],
        ["clinicdb-15", "clinicdb-16"], ["clinicdb-30", "clinicdb-31", "clinicdb-32", "clinicdb-33"],
        ["clinicdb-50"]]))
    assert all(len(g) == 1 for g in groups if g[0].startswith("kvasir"))


@pytest.mark.parametrize("seed", range(5))
def test_grouped_split_keeps_every_group_whole(seed):
    stems = CLINIC + KVASIR
    train, val = split_stems(stems, 0.3, seed, "grouped")
    assert set(train) | set(val) == set(stems) and not set(train) & set(val) and val
    for group in frame_groups(stems):
        assert set(group) <= set(train) or set(group) <= set(val), group


def test_random_split_is_deterministic_and_depends_on_the_seed():
    stems = [f"img{i:03d}x" for i in range(40)]
    assert split_stems(stems, 0.25, 7) == split_stems(list(reversed(stems)), 0.25, 7)
    assert split_stems(stems, 0.25, 7)[1] != split_stems(stems, 0.25, 8)[1]
    assert len(split_stems(stems, 0.25, 7)[1]) == 10


def test_grouped_split_refuses_a_pattern_that_makes_one_group():
    with pytest.raises(UserError, match="one group"):
        split_stems([f"frame{i}" for i in range(10)], 0.2, 0, "grouped")


def test_teacher_trained_on_another_split_is_refused():
    student = split_record("/d", ["a", "b"], 0.1, 42, "grouped", 10)
    check_teacher_split(split_record("/d", ["b", "a"], 0.1, 42, "grouped", 10), student, "t.pt")
    with pytest.raises(UserError, match="different split.*students' validation images"):
        check_teacher_split(split_record("/d", ["a", "c"], 0.1, 42, "random", 10), student, "t.pt")
    with pytest.raises(UserError, match="records no training split"):
        check_teacher_split(None, student, "t.pt")
