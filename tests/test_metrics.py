import pytest
import torch

from core.metrics import SegmentationScores, dice_iou, mean_over_sets, source_summaries, validation_average


def test_dice_and_iou_on_hand_made_masks():
    pred = torch.zeros(4, 4, dtype=torch.bool)
    target = torch.zeros(4, 4, dtype=torch.bool)
    pred[0, :] = True  # 4 pixels
    target[0, :2] = True  # 2 pixels, both inside pred
    dice, iou = dice_iou(pred, target)
    assert dice == 2 * 2 / (4 + 2)
    assert iou == 2 / 4


def test_empty_prediction_on_empty_mask_scores_one():
    empty = torch.zeros(8, 8)
    assert dice_iou(empty, empty) == (1.0, 1.0)


def test_empty_prediction_on_non_empty_mask_scores_zero():
    target = torch.zeros(8, 8)
    target[2:4, 2:4] = 1
    assert dice_iou(torch.zeros(8, 8), target) == (0.0, 0.0)


def test_scores_are_averaged_per_image_at_the_mask_resolution():
    scores = SegmentationScores()
    logits = torch.full((2, 1, 4, 4), -10.0)
    logits[0] = 10.0  # image 0: predicts everything
    masks = [torch.ones(8, 8), torch.zeros(6, 6)]  # different original sizes
    scores.add_batch(logits, masks)
    summary = scores.summary()
    assert summary["n"] == 2
    assert summary["dice"] == 1.0 and summary["iou"] == 1.0  # perfect + empty/empty


def test_threshold_is_half_probability():
    logits = torch.tensor([[[[0.1, -0.1]]]])
    scores = SegmentationScores()
    scores.add_batch(logits, [torch.tensor([[1.0, 0.0]])])
    assert scores.summary()["dice"] == 1.0


def test_mean_over_sets_weights_each_set_once():
    mean = mean_over_sets({"a": {"dice": 1.0, "iou": 1.0, "n": 100}, "b": {"dice": 0.0, "iou": 0.5, "n": 1}})
    assert mean["dice"] == 0.5 and mean["iou"] == 0.75 and mean["n"] == 101


def test_validation_averages_each_source_once_or_every_image_once():
    scores = SegmentationScores(dice=[1.0, 0.8, 0.6, 0.2], iou=[1.0, 0.5, 0.5, 0.1])
    sources = ["kvasir", "kvasir", "kvasir", "clinicdb"]
    assert source_summaries(scores, sources) == {
        "clinicdb": {"dice": 0.2, "iou": 0.1, "n": 1},
        "kvasir": {"dice": pytest.approx(0.8), "iou": pytest.approx(2 / 3), "n": 3},
    }
    by_sources = validation_average(scores, sources, "sources")
    assert by_sources["dice"] == pytest.approx(0.5) and by_sources["iou"] == pytest.approx((0.1 + 2 / 3) / 2)
    assert validation_average(scores, sources, "images")["dice"] == pytest.approx(0.65)
