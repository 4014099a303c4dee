import pytest
import torch

from core.config import config_from_dict
from core.errors import UserError
from core.kd_losses import KD_LOSSES, register_kd_loss
from core.losses import DistillationLoss, SupervisedLoss, kd_loss


def test_mse_kd_is_zero_when_student_equals_teacher():
    logits = torch.randn(2, 1, 8, 8)
    assert kd_loss(logits, logits.clone(), temperature=4.0, kind="mse").item() == 0.0


def test_bce_kd_is_minimal_when_student_equals_teacher():
    teacher = torch.randn(2, 1, 8, 8)
    student = teacher.clone().requires_grad_(True)
    kd_loss(student, teacher, temperature=3.0, kind="bce").backward()
    assert student.grad.abs().max().item() < 1e-6
    moved = kd_loss(teacher + 0.5, teacher, temperature=3.0, kind="bce")
    assert moved > kd_loss(teacher, teacher, temperature=3.0, kind="bce")


@pytest.mark.parametrize("kind", ["bce", "mse"])
def test_kd_gradient_reaches_the_student_only(kind):
    student = torch.randn(2, 1, 8, 8, requires_grad=True)
    teacher = torch.randn(2, 1, 8, 8, requires_grad=True)
    kd_loss(student, teacher, temperature=2.0, kind=kind).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_bce_kd_scales_with_temperature_squared():
    # With T² scaling the gradient norm stays of the same order as T grows (Hinton et al.).
    teacher = torch.randn(1, 1, 16, 16) * 3
    norms = []
    for t in (1.0, 8.0):
        student = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        kd_loss(student, teacher, temperature=t, kind="bce").backward()
        norms.append(student.grad.norm().item())
    assert 0.1 < norms[1] / norms[0] < 10


def test_total_is_alpha_weighted_sum():
    student, teacher = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    mask = (torch.rand(2, 1, 8, 8) > 0.5).float()
    total = DistillationLoss(alpha=0.3, temperature=2.0, kind="mse")(student, mask, teacher)
    expected = 0.3 * SupervisedLoss()(student, mask) + 0.7 * kd_loss(student, teacher, 2.0, "mse")
    assert total.item() == pytest.approx(expected.item())


def test_supervised_loss_prefers_the_right_answer():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    good, bad = (mask * 2 - 1) * 10, -(mask * 2 - 1) * 10
    assert SupervisedLoss()(good, mask) < SupervisedLoss()(bad, mask)


@pytest.fixture
def l1_kd_loss():
    """A throwaway KD term registered as 'test-l1', removed again so that no other test sees it."""

    @register_kd_loss("test-l1")
    def l1(student_logits, teacher_logits, temperature):
        return (student_logits - teacher_logits).abs().mean() / temperature

    try:
        yield l1
    finally:
        KD_LOSSES.pop("test-l1", None)


def test_a_registered_kd_loss_is_a_valid_config_value_and_is_used(l1_kd_loss):
    assert config_from_dict({"kd_loss": "test-l1"}).kd_loss == "test-l1"
    student = torch.randn(2, 1, 8, 8, requires_grad=True)
    teacher = torch.randn(2, 1, 8, 8, requires_grad=True)
    mask = (torch.rand(2, 1, 8, 8) > 0.5).float()
    total = DistillationLoss(alpha=0.25, temperature=2.0, kind="test-l1")(student, mask, teacher)
    expected = 0.25 * SupervisedLoss()(student, mask) + 0.75 * l1_kd_loss(student, teacher, 2.0)
    assert total.item() == pytest.approx(expected.item())
    total.backward()
    assert teacher.grad is None  # kd_loss detaches the teacher for every registered term


def test_an_unregistered_kd_loss_is_refused_naming_the_registered_ones():
    with pytest.raises(UserError, match="kd_loss: must be one of bce, mse, got 'test-l1'"):
        config_from_dict({"kd_loss": "test-l1"})
    with pytest.raises(ValueError, match="registered: bce, mse"):
        kd_loss(torch.zeros(1), torch.zeros(1), 1.0, kind="test-l1")
