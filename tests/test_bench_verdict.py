"""bench/verdict_null.py at 200 runs: the default verdict design's error rates on a flat null and its power at
+0.02 (loose bounds: a fast check that the bench and the verdict it drives still agree)."""

import re
import runpy
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "verdict_null.py"


def bench(monkeypatch, capsys, *args: str) -> dict[str, str]:
    """The bench's command line, run in this interpreter (a fresh one would import torch again for nothing)."""
    monkeypatch.setattr(sys, "argv", [str(BENCH), "--runs", "200", *args])
    runpy.run_path(str(BENCH), run_name="__main__")
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("RESULT "))
    return dict(re.findall(r"(\w+)=(\S+)", line))


def test_flat_null_error_rates_and_power_of_the_default_design(monkeypatch, capsys):
    null = bench(monkeypatch, capsys, "--effect", "0")
    assert null["design"] == "factorial" and null["runs"] == "200"
    assert float(null["helped_rate"]) <= 0.06 and float(null["hurt_rate"]) <= 0.06
    assert float(null["no_effect_rate"]) > 0.2  # with no effect, "no effect" is a verdict the seeds can reach
    power = bench(monkeypatch, capsys, "--effect", "0.02", "--seed", "1")
    assert float(power["helped_rate"]) >= 0.85 and float(power["hurt_rate"]) == 0
