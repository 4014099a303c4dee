"""core/predict.py, core/demo.py and `tune.best predict|demo`: predictions at each image's own size that
match evaluation, both runtimes agree, bad inputs are named and skipped, the demo serves over HTTP."""

import csv
import shutil
import socket
import sys
import types
import urllib.request

import cv2
import numpy as np
import pytest
import torch
from conftest import heavy_modules_imported

from core.data import discover, read_image, read_mask
from core.errors import UserError
from core.metrics import binarize, dice_iou
from core.predict import PREDICTIONS_CSV, Predictor, predict_files
from tune import best as best_cli


@pytest.fixture(scope="module")
def export_dir(student_export):
    """An export of a two-epoch baseline run on the tiny synthetic data (shared: never changed here)."""
    return student_export[0]


@pytest.fixture(scope="module")
def onnx_predictor(export_dir):
    return Predictor(export_dir)


def odd_sized_image(demo_root, size=(75, 130)) -> np.ndarray:
    """A demo test image stretched to a non-square size the model was not trained at (H, W)."""
    path = min((demo_root / "TestDataset" / "Kvasir" / "images").iterdir())
    return cv2.resize(read_image(path), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def write_rgb(path, image):
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def test_auto_runtime_is_onnxruntime_for_an_export_and_pytorch_for_a_run(export_dir, onnx_predictor):
    assert onnx_predictor.runtime == "onnxruntime" and onnx_predictor.img_size == 64
    assert onnx_predictor.synthetic is True
    assert Predictor(export_dir / "model.pt").runtime == "pytorch"  # a checkpoint file has no model.onnx


def test_prediction_is_at_the_original_size_and_thresholded_like_evaluation(export_dir, onnx_predictor, demo_root):
    image = odd_sized_image(demo_root)
    prediction = onnx_predictor.predict([image])[0]
    assert prediction.probability.shape == prediction.mask.shape == (75, 130)
    assert prediction.probability.dtype == np.float32 and prediction.mask.dtype == bool
    assert np.array_equal(prediction.mask, prediction.probability > 0.5)
    assert prediction.seconds > 0 and 0 <= prediction.area_percent <= 100
    # Same mask as core.metrics.binarize on the logits core.evaluate would compute for this image.
    from core.data import normalize, preprocess
    from core.models import load_model

    model, _ = load_model(str(export_dir))
    with torch.no_grad():
        logits = model(normalize(preprocess(image, 64)[None]))[0]
    expected = binarize(logits, (75, 130)).numpy()
    disagree = prediction.mask != expected
    # ONNX Runtime and PyTorch differ by ~1e-6 in logits: only pixels sitting on the threshold may flip.
    assert np.all(np.abs(prediction.probability[disagree] - 0.5) < 1e-4)


def test_onnxruntime_and_pytorch_runtimes_agree_on_a_batch_of_mixed_sizes(export_dir, onnx_predictor, demo_root):
    images = [odd_sized_image(demo_root), odd_sized_image(demo_root, (64, 64)), odd_sized_image(demo_root, (90, 40))]
    torch_predictor = Predictor(export_dir, runtime="pytorch", device="cpu")
    assert torch_predictor.runtime == "pytorch"
    for a, b in zip(onnx_predictor.predict(images, batch_size=2), torch_predictor.predict(images)):
        assert a.probability.shape == b.probability.shape
        assert np.abs(a.probability - b.probability).max() < 1e-4


def test_predictor_scores_the_test_set_as_core_evaluate_does(export_dir, onnx_predictor, demo_root):
    import json

    pairs = discover(demo_root).test_sets["Kvasir"]
    predictions = onnx_predictor.predict([read_image(p.image) for p in pairs])
    dice = np.mean(
        [
            dice_iou(torch.from_numpy(pred.mask), torch.from_numpy(read_mask(p.mask)))[0]
            for pred, p in zip(predictions, pairs)
        ]
    )
    exported = json.loads((export_dir / "metrics.json").read_text())
    assert dice == pytest.approx(exported["test"]["test_sets"]["Kvasir"]["dice"], abs=1e-6)


def test_predict_cli_writes_masks_and_overlays_and_names_each_bad_file(export_dir, demo_root, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    write_rgb(images / "wide.png", odd_sized_image(demo_root))
    write_rgb(images / "square.jpg", odd_sized_image(demo_root, (64, 64)))
    (images / "notes.png").write_text("not an image")
    ok, jpeg = cv2.imencode(".jpg", odd_sized_image(demo_root, (64, 64)))
    assert ok
    (images / "cut.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])  # truncated mid-stream
    (images / "README.txt").write_text("ignored: not an image suffix")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        best_cli.main(
            ["predict", "--model", str(export_dir), str(images), str(empty), "--out", str(out), "--batch-size", "1"]
        )
    assert info.value.code == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 3
    for name in ("notes.png", "cut.jpg", "empty"):
        assert sum(name in line for line in errors) == 1, name
    assert "predicted 2 image(s)" in captured.out and "img/s" in captured.out and "polyp area" in captured.out
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["square.png", "wide.png"]
    mask = cv2.imread(str(out / "masks" / "wide.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (75, 130) and set(np.unique(mask)) <= {0, 255}
    assert cv2.imread(str(out / "overlays" / "wide.png")).shape == (75, 130, 3)
    with (out / PREDICTIONS_CSV).open() as f:
        rows = {row["mask"]: row for row in csv.DictReader(f)}
    assert float(rows["masks/wide.png"]["polyp_area_percent"]) == pytest.approx(100 * (mask > 0).mean(), abs=1e-3)


def test_predict_cli_exits_0_and_replaces_its_earlier_output(export_dir, demo_root, tmp_path, capsys):
    image = tmp_path / "one.png"
    write_rgb(image, odd_sized_image(demo_root))
    out = tmp_path / "out"
    for _ in range(2):  # the second run replaces the first run's folder
        best_cli.main(["predict", "--model", str(export_dir), str(image), "--out", str(out)])
    assert "predicted 1 image(s)" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["one.png"]


@pytest.mark.parametrize("case", ["missing model", "unrelated out folder", "only bad inputs"])
def test_predict_cli_user_errors_are_one_line_and_exit_2(case, export_dir, demo_root, tmp_path, capsys):
    image = tmp_path / "one.png"
    write_rgb(image, odd_sized_image(demo_root))
    out = tmp_path / "out"
    model, inputs = export_dir, [str(image)]
    if case == "missing model":
        model = tmp_path / "no-such-export"
    elif case == "unrelated out folder":
        out.mkdir()
        (out / "keep.txt").write_text("someone's file")
    else:
        inputs = [str(tmp_path / "missing.png")]
    with pytest.raises(SystemExit) as info:
        best_cli.main(["predict", "--model", str(model), *inputs, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error: ")
    if case == "unrelated out folder":
        assert (out / "keep.txt").read_text() == "someone's file"
    else:
        assert not out.exists()


def write_onnx_taking(path, size):
    """A stand-in model.onnx whose input is fixed at size x size (dynamic batch), as an export at `size` has."""
    import onnx
    from onnx import TensorProto, helper

    shape = ["batch", 3, size, size]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["logits"])],
        "stand-in",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # one every ONNX Runtime of the last years reads
    onnx.save(model, str(path))


def test_onnx_made_at_another_size_than_its_config_is_refused_when_loaded(export_dir, demo_root, tmp_path, capsys):
    stale = tmp_path / "stale-export"
    shutil.copytree(export_dir, stale)
    write_onnx_taking(stale / "model.onnx", 32)  # the config says 64
    with pytest.raises(UserError) as info:
        Predictor(stale)
    assert str(info.value).startswith(f"{stale / 'model.onnx'}: takes 32x32 images but ")
    assert "img_size 64; re-export the model" in str(info.value)
    image = tmp_path / "one.png"
    write_rgb(image, odd_sized_image(demo_root))
    with pytest.raises(SystemExit) as exit_info:
        best_cli.main(["predict", "--model", str(stale), str(image), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "model.onnx: takes 32x32" in err
    assert not (tmp_path / "out").exists()
    assert Predictor(stale, runtime="pytorch", device="cpu").img_size == 64  # the weights themselves are fine


def test_demo_on_a_busy_port_is_one_line_and_exit_2(export_dir, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as info:
            best_cli.main(["demo", "--model", str(export_dir), "--port", str(port)])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2
    assert err == f"error: port {port} is in use; pass another --port, or --port 0 for a free one"


def test_demo_port_0_serves_on_a_free_port_and_prints_its_url(export_dir, capsys, monkeypatch):
    launched = {}
    stand_in = types.ModuleType("core.demo")  # what tune.best imports; Gradio itself is not started here
    stand_in.build_demo = lambda predictor: "app"
    stand_in.launch = lambda app, host, port, auth: launched.update(host=host, port=port, auth=auth)
    monkeypatch.setitem(sys.modules, "core.demo", stand_in)
    best_cli.main(["demo", "--model", str(export_dir), "--port", "0"])
    port = launched["port"]
    assert port > 0 and launched["host"] == "127.0.0.1"
    assert f"at http://127.0.0.1:{port}/" in capsys.readouterr().out
    assert best_cli.demo_port("127.0.0.1", None) is None  # no --port: Gradio's first free one from 7860
    assert launched["auth"] is None  # on this machine only: no login needed


def test_demo_beyond_this_machine_needs_a_login(export_dir, capsys, monkeypatch):
    launched = {}
    stand_in = types.ModuleType("core.demo")
    stand_in.build_demo = lambda predictor: "app"
    stand_in.launch = lambda app, host, port, auth: launched.update(host=host, auth=auth)
    monkeypatch.setitem(sys.modules, "core.demo", stand_in)
    for extra, problem in (([], "without a login; pass --auth USER:PASS"), (["--auth", "alice"], "expected USER:PASS")):
        with pytest.raises(SystemExit) as info:
            best_cli.main(["demo", "--model", str(export_dir), "--host", "0.0.0.0", "--port", "0", *extra])
        assert info.value.code == 2 and problem in capsys.readouterr().err and not launched
    best_cli.main(["demo", "--model", str(export_dir), "--host", "0.0.0.0", "--port", "0", "--auth", "alice:s3cret"])
    assert launched == {"host": "0.0.0.0", "auth": ("alice", "s3cret")}


def test_predict_files_names_two_inputs_with_one_stem(onnx_predictor, demo_root, tmp_path):
    for name in ("a.png", "a.jpg"):
        write_rgb(tmp_path / name, odd_sized_image(demo_root))
    run = predict_files(onnx_predictor, [tmp_path / "a.png", tmp_path / "a.jpg"], tmp_path / "out", progress=False)
    assert len(run.written) == 1 and len(run.problems) == 1 and "a.jpg" in run.problems[0]


def test_an_image_that_runs_out_of_memory_is_skipped_and_the_others_are_written(
    onnx_predictor, demo_root, tmp_path, monkeypatch
):
    from core import image_files

    real = image_files._decode_pil

    def out_of_memory_on_big(path):
        if path.name == "big.png":
            raise MemoryError  # as numpy or Pillow raise it when an allocation fails
        return real(path)

    monkeypatch.setattr(image_files, "_decode_pil", out_of_memory_on_big)
    for name in ("big.png", "fine.png"):
        write_rgb(tmp_path / name, odd_sized_image(demo_root))
    run = predict_files(onnx_predictor, [tmp_path / "big.png", tmp_path / "fine.png"], tmp_path / "out", progress=False)
    assert [source.name for source, _ in run.written] == ["fine.png"] and len(run.problems) == 1
    assert "big.png" in run.problems[0] and "not enough memory to decode its" in run.problems[0]


def test_demo_segment_handles_colour_grey_and_alpha_images(onnx_predictor, demo_root):
    from core.demo import segment

    image = odd_sized_image(demo_root)
    expected = onnx_predictor.predict([image])[0].mask
    for variant in (image, np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])):
        shown, mask, text = segment(onnx_predictor, variant)
        assert shown.shape == (75, 130, 3) and np.array_equal(mask > 0, expected)
        assert "Polyp area" in text and "ms" in text
    grey = segment(onnx_predictor, image[..., 0])
    assert grey[0].shape == (75, 130, 3)
    assert segment(onnx_predictor, None)[:2] == (None, None)


def test_demo_reads_an_upload_from_its_file_with_the_pixel_cap_and_names_no_server_path(onnx_predictor, tmp_path):
    import gradio as gr
    from test_data import _png_declaring

    from core.demo import segment

    upload = _png_declaring(tmp_path / "upload.png", 12000, 12000)  # a few bytes declaring 144 MP
    with pytest.raises(gr.Error) as info:
        segment(onnx_predictor, str(upload))
    assert "over the 50 MP limit" in info.value.message and str(tmp_path) not in info.value.message


def test_demo_app_serves_the_page_and_segments_an_upload_offline(onnx_predictor, demo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    from gradio_client import Client, handle_file

    from core.demo import build_demo, launch

    demo = build_demo(onnx_predictor)
    assert demo.analytics_enabled is False  # no version check or analytics call home
    assert demo.delete_cache == (600, 600)  # uploads and results are forgotten
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(demo, host="127.0.0.1", port=port, block=False)
    try:
        assert not demo.share and demo.max_file_size == 20 * 1024 * 1024  # a larger upload is refused
        url = f"http://127.0.0.1:{port}/"
        html = urllib.request.urlopen(url, timeout=60).read().decode()
        assert "Polyp segmentation demo" in html
        image = tmp_path / "upload.png"
        write_rgb(image, odd_sized_image(demo_root))
        shown, mask, text = Client(url, verbose=False).predict(handle_file(str(image)), api_name="/segment")
        mask = cv2.imread(mask, cv2.IMREAD_GRAYSCALE)
        expected = onnx_predictor.predict([odd_sized_image(demo_root)])[0].mask
        assert cv2.imread(shown).shape == (75, 130, 3) and np.array_equal(mask > 127, expected)
        assert "Polyp area" in text and "SYNTHETIC" in html
    finally:
        demo.close()


def test_predict_in_a_fresh_interpreter_imports_neither_ray_nor_the_sweep(export_dir, demo_root, tmp_path):
    images = demo_root / "TestDataset" / "Kvasir" / "images"
    bad, output = heavy_modules_imported(
        "tune.best", ["predict", "--model", str(export_dir), str(images), "--out", str(tmp_path / "out")]
    )
    assert bad == [] and "EXIT 0" in output, output[-2000:]
    assert len(list((tmp_path / "out" / "masks").iterdir())) == len(list(images.iterdir()))
