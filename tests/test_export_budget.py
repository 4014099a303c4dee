"""`python -m tune.best export --latency-budget-ms` (tune/best.py) and the model card's latency line
(core/export.py): a fake finished sweep whose front names copies of a tiny trained student."""

import json
import shutil

import pytest
from test_front_report import DESCRIBED, MEASURED_AT, best_record

from core.export import ExportMetrics, card_latency_line
from tune import best as best_cli

ALTERNATIVE = "confirm/kd-2-1/checkpoint_000004"  # kd-2's best seed (mobilenet_v2, 20 ms)


@pytest.fixture(scope="module")
def sweep(student_checkpoint, tmp_path_factory):
    """best.json with a front (winner kd-1 on resnet18 at 45 ms; kd-2 on mobilenet_v2 at 20 ms), and the
    checkpoints export reads: the winner's verdict run and kd-2's best selection run."""
    folder = tmp_path_factory.mktemp("budget") / "rt"
    best = best_record()
    for path in (best["checkpoint"], f"{ALTERNATIVE}/trainer.pt"):
        (folder / path).parent.mkdir(parents=True)
        shutil.copy(student_checkpoint, folder / path)
    (folder / "best.json").write_text(json.dumps(best))
    return folder


def test_export_under_a_budget_writes_the_best_confirmed_student_within_it(sweep, tmp_path, capsys):
    out = tmp_path / "export"
    best_cli.main(["export", "--sweep", str(sweep), "--out", str(out), "--latency-budget-ms", "30", "--no-wandb"])
    printed = capsys.readouterr().out
    assert (
        "exporting kd-2 (mobilenet_v2, 20.0 ms at the target), not the sweep's winner kd-1 (resnet18, 45.0 ms): "
        "the winner takes 45.0 ms, over the 30 ms budget"
    ) in printed
    metrics = json.loads((out / "metrics.json").read_text())
    # kd-2's run (its best selection seed), its parameters, and test scores measured here, not the winner's.
    assert metrics["trial_id"] == "r-kd-2-1" and metrics["params"]["student_backbone"] == "mobilenet_v2"
    assert metrics["test"]["mean"]["n"] > 0 and metrics["test"] != best_record()["test"]
    assert "configuration kd-2 (mobilenet_v2)" in metrics["selection"] and "seed 44" in metrics["selection"]
    deployment = metrics["deployment"]
    assert (deployment["latency_ms"], deployment["fps"], deployment["budget_ms"]) == (20.0, 100.0, 30.0)
    assert deployment["target"]["runtime"] == "onnxruntime-int8" and deployment["measured_at"] == MEASURED_AT
    assert deployment["fastest_alternative"] is None and deployment["instead_of"] == "kd-1"
    card = (out / "MODEL_CARD.md").read_text()
    assert (
        "**Latency:** 20.0 ms per call (100.0 frames/s) with ONNX Runtime int8, CPU, 2 threads, 64 px, batch 2, "
        f"measured on {MEASURED_AT}; chosen under a 30 ms budget."
    ) in card  # no confirmed student is faster
    assert "exported instead of its winner `kd-1`" in card


def test_a_budget_nothing_confirmed_meets_is_one_line_naming_the_fastest_and_exit_2(sweep, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        best_cli.main(["export", "--sweep", str(sweep), "--out", str(tmp_path / "export"), "--latency-budget-ms", "15"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1
    assert "no confirmed student meets a 15 ms budget; the fastest is mobilenet_v2 at 20.0 ms" in err
    assert not (tmp_path / "export").exists()


def test_a_budget_on_a_sweep_without_a_deploy_target_is_refused(tmp_path, capsys):
    (tmp_path / "best.json").write_text(json.dumps(best_record(with_front=False)))
    with pytest.raises(SystemExit) as info:
        best_cli.main(["export", "--sweep", str(tmp_path), "--out", str(tmp_path / "e"), "--latency-budget-ms", "30"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1 and "this sweep has no deploy target" in err


def test_without_a_budget_flag_the_targets_own_budget_keeps_the_winner_with_its_latency(sweep):
    chosen = best_cli.choose_export(sweep)
    assert chosen.note is None and chosen.checkpoint == sweep / best_record()["checkpoint"]
    assert chosen.metrics.trial_id == "v-kd-1-0" and chosen.metrics.test == best_record()["test"]
    deployment = chosen.metrics.deployment
    assert (deployment["backbone"], deployment["latency_ms"], deployment["budget_ms"]) == ("resnet18", 45.0, 50.0)
    assert deployment["fps"] == pytest.approx(2000 / 45, abs=0.05) and deployment["instead_of"] is None
    # The fastest confirmed student faster than it is named (what more speed would cost).
    assert deployment["fastest_alternative"]["backbone"] == "mobilenet_v2"
    assert (
        "chosen under a 50 ms budget (fastest confirmed alternative: mobilenet_v2, kd-2, 20.0 ms, mean val "
        "Dice 0.7900)." in card_latency_line(deployment)
    )
    assert DESCRIBED.removesuffix(", budget 50 ms") in card_latency_line(deployment)


def test_a_sweep_without_a_deploy_target_exports_as_before(tmp_path):
    (tmp_path / "best.json").write_text(json.dumps(best_record(with_front=False)))
    metrics = best_cli.choose_export(tmp_path).metrics
    assert metrics.deployment is None and "deployment" not in metrics.to_dict()
    assert ExportMetrics(0.5, 1, {}, False).to_dict().keys() == metrics.to_dict().keys()
