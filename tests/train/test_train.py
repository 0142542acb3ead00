"""hwseg train / hwseg eval: resumable quantization-aware training and three-way evaluation."""

import subprocess
import sys

import pytest
import torch
from PIL import Image

from hwseg.frontend import load_checkpoint
from hwseg.train.session import TrainRequest, run_evaluation, run_training, state_path

SMALL = dict(train_count=48, val_count=16, batch_size=16)


def _train(out, epochs, resume=False, **extra):
    return run_training(TrainRequest(model="int8_tiny", data="synthetic", epochs=epochs, out=out, resume=resume,
                                     **{**SMALL, **extra}), log=lambda line: None)


def test_training_writes_a_checkpoint_with_history(tmp_path):
    out = tmp_path / "m.pt"
    history = _train(out, 2)
    assert [r.epoch for r in history] == [1, 2]
    loaded = load_checkpoint(out)
    assert loaded.arch == "int8_tiny" and loaded.meta["train"]["epochs_done"] == 2
    assert len(loaded.meta["train"]["history"]) == 2
    assert state_path(out).exists()
    assert 0.0 <= history[-1].miou <= 1.0


def test_resuming_gives_the_same_weights_as_training_straight_through(tmp_path):
    straight, resumed = tmp_path / "straight.pt", tmp_path / "resumed.pt"
    _train(straight, 2)
    _train(resumed, 1)
    _train(resumed, 2, resume=True)
    a, b = load_checkpoint(straight).model.state_dict(), load_checkpoint(resumed).model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert load_checkpoint(resumed).meta["train"]["epochs_done"] == 2
    assert len(load_checkpoint(resumed).meta["train"]["history"]) == 2


def test_resume_without_a_run_says_so(tmp_path):
    from hwseg.errors import CheckpointError

    with pytest.raises(CheckpointError, match=r"cannot resume: .*missing; start without --resume"):
        _train(tmp_path / "none.pt", 1, resume=True)


def test_evaluation_reports_three_views_and_the_integer_graph_matches_the_quantized_model(tmp_path):
    out = tmp_path / "m.pt"
    _train(out, 2)
    results = run_evaluation(out, "synthetic", count=16)
    assert set(results) == {"float", "quantized", "integer"}
    for view in results.values():
        assert 0.0 <= view["miou"] <= 1.0 and len(view["per_class"]) == 4
    # The exported integer graph computes exactly what the quantized model computes... up to the
    # float model's rounding; the two must agree closely (they are equal on almost every pixel).
    assert abs(results["integer"]["miou"] - results["quantized"]["miou"]) < 0.01


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hwseg.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def _one_line_error(result):
    lines = [l for l in result.stderr.strip().splitlines() if not l.startswith("hwseg: ")]
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def _voc_tree(root, label_value):
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    for split, name in (("train", "a"), ("val", "b")):
        Image.new("RGB", (32, 32), (90, 20, 200)).save(root / "JPEGImages" / f"{name}.jpg")
        label = Image.new("P", (32, 32), label_value)
        label.putpalette([0, 0, 0] * 256)
        label.save(root / "SegmentationClass" / f"{name}.png")
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(f"{name}\n")
    return root


def test_cli_data_errors_are_one_line(tmp_path):
    out = tmp_path / "m.pt"
    corrupt = tmp_path / "corrupt"
    (corrupt / "leftImg8bit").mkdir(parents=True)
    message = _one_line_error(_cli("train", "int8_tiny", "--data", corrupt, "--epochs", "1", "--out", out))
    assert "corrupt" in message
    bad_label = _voc_tree(tmp_path / "voc", label_value=9)
    message = _one_line_error(_cli("train", "int8_tiny", "--data", bad_label, "--size", "32x32", "--epochs", "1",
                                   "--out", out))
    assert "9" in message and "0..3" in message.replace("…", "..")
    message = _one_line_error(_cli("train", "int8_tiny", "--size", "30x30", "--epochs", "1", "--out", out))
    assert "not divisible by the network's stride 4" in message
    assert not out.exists()


def test_cli_train_and_eval(tmp_path):
    out = tmp_path / "m.pt"
    result = _cli("train", "int8_tiny", "--epochs", "1", "--out", out, "--train-count", "32", "--val-count", "16")
    assert result.returncode == 0, result.stderr
    assert "validation mIoU" in result.stdout
    result = _cli("eval", out, "--count", "16")
    assert result.returncode == 0, result.stderr
    for view in ("float", "quantized", "integer"):
        assert view in result.stdout


def test_integer_training_mode_from_the_command_line(tmp_path):
    out = tmp_path / "int.pt"
    result = _cli("train", "int_fcn_tiny", "--integer-training", "--epochs", "1", "--out", out, "--train-count", "16",
                  "--val-count", "8")
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(out).meta["train"]["integer_training"] is True
    refused = _one_line_error(_cli("train", "int8_tiny", "--integer-training", "--epochs", "1", "--out",
                                   tmp_path / "no.pt"))
    assert "BatchNorm" in refused and "int_fcn_tiny" in refused and refused.count("\n") == 0


def test_training_can_start_from_a_float_baseline(tmp_path):
    baseline, tuned = tmp_path / "float.pt", tmp_path / "tuned.pt"
    _train(baseline, 1, quantized=False)
    _train(tuned, 1, init=baseline)
    first = load_checkpoint(baseline).model.state_dict()
    second = load_checkpoint(tuned).model.state_dict()
    assert any(not torch.equal(first[k], second[k]) for k in first)  # trained on
    fresh = tmp_path / "fresh.pt"
    _train(fresh, 1)
    assert any(not torch.equal(load_checkpoint(fresh).model.state_dict()[k], second[k]) for k in first)
    with pytest.raises(Exception, match="cannot start from"):
        run_training(TrainRequest(model="bfcn_tiny", data="synthetic", epochs=1, out=tmp_path / "x.pt",
                                  init=baseline, **SMALL), log=lambda line: None)
