"""The generated PYNQ driver, unchanged, against the emitted Verilog: ``hwseg_driver`` imports a stand-in ``pynq``
(tests/deploy/pynq_standin.py) whose AXI DMA feeds the DMA wrapper in the Verilator harness under random
valid gaps and ready backpressure. Images go in through ``segment``, class maps come out, every pixel equal to
golden; and the driver's one-line errors (wrong shape or type, a missing bitstream, a DMA that never finishes)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from hwseg.errors import HwsegError
from hwseg.flow import build
from hwseg.golden import run_graph
from tests.deploy import pynq_standin
from tests.deploy.designs import DESIGNS, DRAM_DESIGNS, ROOT, write_deploy
from tests.deploy.designs import deployed as _design


def _deployed(design, folder: Path, *, bitstream=True):
    """Writes ``deploy/`` as the build does (with a stand-in .bit and .hwh where the Vivado build puts them) and
    imports its driver under the stand-in pynq."""
    write_deploy(design, folder)
    driver = folder / "deploy" / "hwseg_driver"
    if bitstream:
        (driver / f"{design.name}.bit").write_bytes(b"stand-in bitstream")
        (driver / f"{design.name}.hwh").write_text("stand-in hardware handoff")
    sys.modules["pynq"] = pynq_standin
    spec = importlib.util.spec_from_file_location(f"hwseg_driver_{design.name}", driver / "__init__.py",
                                                  submodule_search_locations=[str(driver)])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _no_real_pynq():
    saved = sys.modules.get("pynq")
    yield
    if saved is None:
        sys.modules.pop("pynq", None)
    else:
        sys.modules["pynq"] = saved


@pytest.mark.parametrize("net,board", DESIGNS)
def test_segment_gives_golden_class_maps(net, board, tmp_path):
    """Two batches of 2 frames and one of 1 (5 images, batch_size 2): every pixel of every class map against
    golden, each batch one MM2S transfer and each frame one S2MM transfer ended by tlast."""
    design = _design(net, board)
    driver = _deployed(design, tmp_path)
    pynq_standin.attach(design, seed=3, work_dir=tmp_path / "sim")
    c, h, w = design.graph.input_type.shape
    images = np.random.default_rng(11).integers(0, 256, (5, h, w, c), dtype=np.uint8)
    overlay = driver.SegmentationOverlay(batch_size=2, timeout=600)
    maps = overlay.segment(images)
    expected = run_graph(design.graph, np.moveaxis(images, -1, 1).astype(np.int64))[:, 0]
    assert maps.shape == expected.shape and maps.dtype == np.uint8
    bad = np.argwhere(maps != expected)
    assert not len(bad), (f"{len(bad)} pixels differ; first: frame {bad[0][0]}, pixel ({bad[0][1]}, {bad[0][2]}), "
                          f"channel 0: expected {expected[tuple(bad[0])]}, got {maps[tuple(bad[0])]}")
    assert len(pynq_standin._ATTACHED["runs"]) == 3     # three batches, three runs of the accelerator


@pytest.mark.parametrize("net,board", DRAM_DESIGNS)
def test_a_design_with_buffers_in_dram(net, board, tmp_path):
    """Every buffer and the weights in DRAM: the driver places the region (the weight image at its offset), writes
    its base to the control GPIO with the accelerator held in reset, then lets it run; two batches against golden,
    the memory model holding what the driver put at the base it wrote."""
    design = _design(net, board, "all")
    driver = _deployed(design, tmp_path)
    pynq_standin.attach(design, seed=5, work_dir=tmp_path / "sim")
    overlay = driver.SegmentationOverlay(batch_size=2, timeout=600)
    gpio, dram = overlay.control_gpio, design.manifest["dram"]
    base = int(overlay._region.physical_address)
    hold = 1 << pynq_standin.CONTROL_RESET_BIT
    assert base and gpio.writes[0] == (0x8, hold)                   # held in reset first (it is at power-up)
    assert gpio.writes[-1] == (0x8, base >> 32)                      # released last, the base in place
    assert all(value & hold for offset, value in gpio.writes[:-1] if offset == 0x8)
    assert gpio.registers[0x0] == base & 0xFFFFFFFF
    if "weights" in dram:                                            # (zcu104: the weights load from DRAM)
        weights = dram["weights"]
        assert bytes(overlay._region[weights["offset"]:weights["offset"] + weights["bytes"]]) == design.weight_image
    c, h, w = design.graph.input_type.shape
    images = np.random.default_rng(12).integers(0, 256, (4, h, w, c), dtype=np.uint8)
    maps = overlay.segment(images)
    expected = run_graph(design.graph, np.moveaxis(images, -1, 1).astype(np.int64))[:, 0]
    bad = np.argwhere(maps != expected)
    assert not len(bad), (f"{len(bad)} pixels differ; first: frame {bad[0][0]}, pixel ({bad[0][1]}, {bad[0][2]}), "
                          f"channel 0: expected {expected[tuple(bad[0])]}, got {maps[tuple(bad[0])]}")
    assert len(pynq_standin._ATTACHED["runs"]) == 2


def test_a_wrong_weight_image_is_one_line(tmp_path):
    design = _design("int8_tiny", "zcu104", "all")
    driver = _deployed(design, tmp_path)
    pynq_standin.attach(design)
    image = tmp_path / "deploy" / "hwseg_driver" / "weights.bin"
    image.write_bytes(b"\0" + image.read_bytes()[1:])
    with pytest.raises(driver.DriverError, match=r"weights.bin is not the weight image of this design") as error:
        driver.SegmentationOverlay()
    assert "\n" not in str(error.value)
    image.unlink()
    with pytest.raises(driver.DriverError, match=r"^no weight image at .*weights.bin: copy deploy/hwseg_driver/"):
        driver.SegmentationOverlay()


def test_an_accelerator_left_in_reset_times_out(tmp_path):
    """As on the board: a driver that never released the reset would wait on the DMA, and time out in one line."""
    design = _design("int8_tiny", "zcu104", "all")
    driver = _deployed(design, tmp_path)
    pynq_standin.attach(design)
    overlay = driver.SegmentationOverlay(timeout=0.5)
    base = int(overlay._region.physical_address)
    overlay.control_gpio.write(0x8, (1 << pynq_standin.CONTROL_RESET_BIT) | (base >> 32))
    with pytest.raises(driver.DriverError, match=r"did not finish within 0.5 s"):
        overlay.segment(np.zeros((1, 32, 32, 3), dtype=np.uint8))


def test_the_example_script_runs(tmp_path, monkeypatch, capsys):
    """deploy/example.py as a user runs it on the board (here under the stand-in): the class map of a random image,
    as the golden model gives it, then the fps."""
    import runpy
    design = _design("int8_tiny", "pynq-z2")
    _deployed(design, tmp_path)
    pynq_standin.attach(design, valid_prob=1.0, ready_prob=1.0, work_dir=tmp_path / "sim")
    monkeypatch.chdir(tmp_path / "deploy")
    monkeypatch.syspath_prepend(str(tmp_path / "deploy"))
    monkeypatch.setattr(sys, "argv", ["example.py"])
    sys.modules.pop("hwseg_driver", None)
    try:
        runpy.run_path("example.py", run_name="__main__")
    finally:
        sys.modules.pop("hwseg_driver", None)
    lines = capsys.readouterr().out.splitlines()
    c, h, w = design.graph.input_type.shape
    image = np.random.default_rng(0).integers(0, 256, (h, w, c), dtype=np.uint8)
    expected = run_graph(design.graph, np.moveaxis(image[None], -1, 1).astype(np.int64))[0, 0]
    assert lines[:len(expected)] == ["".join("0123456789abcdefghijklmnopqrstuvwxyz"[v % 36] for v in row)
                                     for row in expected]
    assert lines[-1].endswith(" MB/s out") and " fps (estimated " in lines[-1]


def test_throughput_test_reports_rates(tmp_path):
    design = _design("int8_tiny", "pynq-z2")
    driver = _deployed(design, tmp_path)
    pynq_standin.attach(design, valid_prob=1.0, ready_prob=1.0, work_dir=tmp_path / "sim")
    result = driver.SegmentationOverlay(batch_size=2, timeout=600).throughput_test(batches=2)
    assert result["frames"] == 4 and result["fps"] > 0 and result["in_mbs"] > 0 and result["out_mbs"] > 0


@pytest.mark.parametrize("images,match", [
    (np.zeros((1, 32, 32, 3), dtype=np.float32), r"^images must be uint8, not float32; convert them"),
    (np.zeros((32, 32, 3), dtype=np.uint8), r"^images must be N×32×32×3; for one image add a batch axis"),
    (np.zeros((2, 16, 32, 3), dtype=np.uint8), r"^images must be N×32×32×3 \(N images of 32×32 pixels, 3 "
                                               r"channels\), not 2×16×32×3$"),
    ([[1, 2, 3]], r"^images must be a numpy array of shape N×32×32×3, not list$"),
])
def test_bad_images_are_one_line_errors(images, match, tmp_path):
    driver = _deployed(_design("int8_tiny", "pynq-z2"), tmp_path)
    pynq_standin.attach(_design("int8_tiny", "pynq-z2"))
    overlay = driver.SegmentationOverlay()
    with pytest.raises(driver.DriverError, match=match) as error:
        overlay.segment(images)
    assert "\n" not in str(error.value)


def test_no_images_give_no_maps(tmp_path):
    driver = _deployed(_design("int8_tiny", "pynq-z2"), tmp_path)
    pynq_standin.attach(_design("int8_tiny", "pynq-z2"))
    maps = driver.SegmentationOverlay().segment(np.zeros((0, 32, 32, 3), dtype=np.uint8))
    assert maps.shape == (0, 8, 8) and maps.dtype == np.uint8


def test_a_missing_bitstream_is_a_one_line_error(tmp_path):
    driver = _deployed(_design("int8_tiny", "pynq-z2"), tmp_path, bitstream=False)
    with pytest.raises(driver.DriverError, match=r"^no bitstream at .*int8_tiny\.bit: run `make` in deploy/ \(Vivado\) "
                                                 r"and copy int8_tiny\.bit and int8_tiny\.hwh there$"):
        driver.SegmentationOverlay()


def test_a_dma_that_never_finishes_times_out(tmp_path):
    """An accelerator that never answers (a wrong bitstream): the wait ends after ``timeout`` with one line."""
    design = _design("int8_tiny", "pynq-z2")
    driver = _deployed(design, tmp_path)
    pynq_standin.attach(design, hang=True)
    overlay = driver.SegmentationOverlay(timeout=0.2)
    with pytest.raises(driver.DriverError, match=r"^the DMA's output of frame 1 of 1 did not finish within 0\.2 s: "
                                                 r"the accelerator is not answering"):
        overlay.segment(np.zeros((1, 32, 32, 3), dtype=np.uint8))


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=0), r"^batch_size must be a positive int, not 0$"),
    (dict(batch_size=20000), r"^a batch of 20000 frames is 81,920,000 bytes, over the DMA's 67,108,863; use "
                             r"batch_size=16383 or fewer$"),
    (dict(timeout=0), r"^timeout must be a positive number of seconds, not 0$"),
])
def test_overlay_parameters_are_checked(kwargs, match, tmp_path):
    driver = _deployed(_design("int8_tiny", "pynq-z2"), tmp_path)
    pynq_standin.attach(_design("int8_tiny", "pynq-z2"))
    with pytest.raises(driver.DriverError, match=match):
        driver.SegmentationOverlay(**kwargs)


def test_deploy_refuses_what_it_cannot_package():
    with pytest.raises(HwsegError, match=r"^--deploy packages for the Zynq boards .*; ulx3s-85f has no processing "
                                         r"system to run the driver$"):
        build(ROOT / "examples" / "int8_tiny.pt", "ulx3s-85f").with_deploy()
