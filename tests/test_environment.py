"""core/environment.py: a $POLYP_KD_TUNE_... setting is a positive number, its default when unset, or one
error line naming it."""

import pytest

from core import image_files
from core.environment import positive_number
from core.errors import UserError


@pytest.mark.parametrize("value", ["soon", "0", "-3", "inf", "nan"])
def test_a_setting_that_is_not_a_positive_number_is_one_line_naming_it(value, monkeypatch):
    monkeypatch.setenv("POLYP_KD_TUNE_X", value)
    with pytest.raises(UserError) as info:
        positive_number("POLYP_KD_TUNE_X", 60, "seconds")
    assert str(info.value) == f"$POLYP_KD_TUNE_X={value!r}: must be a number of seconds > 0 (default 60)"


def test_unset_or_empty_is_the_default_and_a_number_is_read(monkeypatch):
    monkeypatch.delenv("POLYP_KD_TUNE_X", raising=False)
    assert positive_number("POLYP_KD_TUNE_X", 60, "seconds") == 60
    monkeypatch.setenv("POLYP_KD_TUNE_X", "")
    assert positive_number("POLYP_KD_TUNE_X", 60, "seconds") == 60
    monkeypatch.setenv(image_files.MAX_MEGAPIXELS_ENV, "2.5")
    assert image_files.max_pixels() == 2_500_000
