"""tune/sweep/console.py: what a trial's progress line says, and which writes go to ray.log while Ray runs
(Ray's, log records, warnings) and which stay on the console. A real sweep's console: tests/test_sweep.py."""

import builtins
import io
from types import FunctionType, SimpleNamespace

from tune.sweep.console import RoutedStream, TrialProgress, describe, error_summary


def test_a_search_trial_is_described_by_its_sample_and_a_selection_run_by_its_configuration_and_seed():
    sample = {
        "alpha": 0.41234,
        "learning_rate": 0.00123,
        "temperature": 3.21,
        "student_backbone": "mobilenet_v2",
        "arm": "kd",
    }
    assert describe(sample) == "alpha=0.41 lr=1.2e-3 T=3.2 mobilenet_v2"
    assert describe({"learning_rate": 0.02, "arm": "baseline"}) == "lr=0.02"
    assert describe({"candidate": {"name": "kd-1", "arm": "kd", "params": {}}, "seed": 43}) == "kd-1 seed 43"


def test_a_trial_end_says_how_it_ended_at_which_epoch_and_its_objective():
    search = TrialProgress("search kd", "best_val_dice", max_t=8)
    assert search.ending({"epoch": 4, "best_val_dice": 0.41234}) == "stopped by ASHA at epoch 4  best_val_dice 0.4123"
    assert search.ending({"epoch": 8, "best_val_dice": 0.5}) == "finished at epoch 8  best_val_dice 0.5000"
    diverged = {"epoch": 2, "diverged": 1, "error": "training loss became nan"}
    assert search.ending(diverged) == "diverged at epoch 2: training loss became nan"
    # Selection and verdict runs always train the full budget: no ASHA there.
    assert TrialProgress("verdict", "best_val_dice").ending({"epoch": 3, "best_val_dice": 0.5}).startswith("finished")


def test_progress_lines_number_each_trial_among_the_stages_trials(capsys):
    progress = TrialProgress("search kd", "best_val_dice", max_t=8)
    progress.setup(total_num_samples=8)
    trials = [
        SimpleNamespace(
            trial_id=f"t{i}",
            num_failures=0,
            config={"learning_rate": 0.005, "arm": "kd"},
            last_result={"epoch": 4, "best_val_dice": 0.4},
        )
        for i in range(3)
    ]
    progress.on_trial_start(0, trials, trials[2])
    progress.on_trial_complete(0, trials, trials[2])
    assert capsys.readouterr().out.splitlines() == [
        "search kd  trial 3/8  t2  started  lr=5.0e-3",
        "search kd  trial 3/8  t2  stopped by ASHA at epoch 4  best_val_dice 0.4000",
    ]


def test_a_failed_trial_is_summed_up_by_its_exception_and_where_ray_kept_the_traceback(tmp_path):
    staged = tmp_path / "staging" / "error.txt"  # Ray writes it in its staging folder first
    staged.parent.mkdir()
    staged.write_text(
        'Failure # 1 (occurred at 2026-01-01_00-00-00)\nray::train_trial() (pid=1)\n  File "x"\n'
        "RuntimeError: CUDA out of memory\n"
    )
    trial = SimpleNamespace(error_file=str(staged), path=str(tmp_path / "trials" / "train_trial_1"))
    assert error_summary(trial) == f"RuntimeError: CUDA out of memory; see {tmp_path}/trials/train_trial_1/error.txt"
    gone = SimpleNamespace(error_file=None, path="/sweep/trials/t")
    assert error_summary(gone) == "Ray recorded no message; see /sweep/trials/t"


def _print_line(stream, text: str) -> None:
    print(text, file=stream)


def _write_as(module: str, stream, text: str) -> None:
    """print `text` to `stream` from code whose module is `module` (as Ray's or a library's code would)."""
    FunctionType(_print_line.__code__, {"__name__": module, "__builtins__": builtins})(stream, text)


def test_rays_output_goes_to_the_log_and_the_sweeps_own_lines_to_the_console():
    console, log = io.StringIO(), io.StringIO()
    routed = RoutedStream(console, log, echo=False)
    _write_as("tune.sweep.select", routed, "selection: 2 configurations")
    _write_as("ray.tune.experimental.output", routed, "Trial status: 2 RUNNING")
    _write_as("ray._private.worker", routed, "(train_trial pid=7) trial diverged")
    _write_as("logging", routed, "WARNING worker.py -- a Ray log record")
    _write_as("warnings", routed, "UserWarning: a library's")
    _write_as("my_script", routed, "a caller's own line")  # a script (or a test) around run_sweep
    assert console.getvalue().splitlines() == ["selection: 2 configurations", "a caller's own line"]
    assert log.getvalue().splitlines() == [
        "Trial status: 2 RUNNING",
        "(train_trial pid=7) trial diverged",
        "WARNING worker.py -- a Ray log record",
        "UserWarning: a library's",
    ]
    echoed = io.StringIO()
    _write_as("ray.tune.experimental.output", RoutedStream(echoed, io.StringIO(), echo=True), "Trial status")
    assert echoed.getvalue() == "Trial status\n"  # --verbose


def test_a_library_that_replaced_print_does_not_make_the_projects_lines_its_own(monkeypatch):
    # Ray's tqdm_ray replaces builtins.print once it prints its processes' output.
    original = builtins.print

    def safe_print(*args, **kwargs):
        original(*args, **kwargs)

    monkeypatch.setattr(builtins, "print", safe_print)
    console, log = io.StringIO(), io.StringIO()
    _write_as("tune.sweep.prepare", RoutedStream(console, log, echo=False), "teacher: trained")
    assert console.getvalue() == "teacher: trained\n" and log.getvalue() == ""
