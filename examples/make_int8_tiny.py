"""Write examples/int8_tiny.pt: the bundled 8-bit example network, UNTRAINED.

The weights are PyTorch's default random initialization under a fixed seed; only the BatchNorm
statistics and the activation clips are calibrated, by forward passes in training mode over
seeded synthetic images (smooth backgrounds with coloured disks, stripes and rectangles plus
noise), so that every layer's activations are realistic: neither all zero nor saturated. The
class map it computes means nothing — the checkpoint exists to exercise the toolchain
(frontend, golden model, hardware, simulation). Training comes later.

The output is deterministic: running the script twice writes identical bytes (``--check``
verifies it). ``torch.save`` itself is deterministic for equal contents, but it records the
file's name inside the zip archive; hwseg.frontend.save_checkpoint therefore saves through
memory, and this script pins the thread count so that the calibration arithmetic is repeatable.

    python examples/make_int8_tiny.py [--out PATH] [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import tempfile
from pathlib import Path

import torch

from hwseg.frontend import save_checkpoint
from hwseg.models import build_model
from hwseg.quant import QAct, calibrate, integer_forward

SEED = 0
ARCH = "int8_tiny"
ARCH_ARGS = {"classes": 4, "width": 8, "input_size": 32}
CALIBRATION_BATCHES = 8
BATCH_SIZE = 16
DEFAULT_OUT = Path(__file__).resolve().with_name("int8_tiny.pt")


def synthetic_images(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` RGB images ``(count, 3, size, size)``: float tensors holding integers 0…255.

    Each image has a smooth random background (class 0) and a few objects of three kinds:
    reddish disks, greenish stripe patches and bluish rectangles, with Gaussian noise on top.
    """
    def rand(*shape):
        return torch.rand(*shape, generator=generator)

    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    images = torch.empty(count, 3, size, size)
    for i in range(count):
        base = rand(3, 1, 1) * 120 + 40
        tilt = (rand(3, 1, 1) - 0.5) * 80
        angle = float(rand(1)) * math.pi
        image = base + tilt * (math.cos(angle) * xs + math.sin(angle) * ys) / size
        for _ in range(int(torch.randint(2, 6, (1,), generator=generator))):
            kind = int(torch.randint(0, 3, (1,), generator=generator))
            cy, cx = (rand(2) * size).tolist()
            extent = float(rand(1)) * size / 4 + size / 10
            if kind == 0:                                   # disk
                mask = (ys - cy) ** 2 + (xs - cx) ** 2 <= extent ** 2
                colour = torch.tensor([200.0, 60.0, 50.0]) + rand(3) * 50
                image = torch.where(mask, colour.view(3, 1, 1), image)
            elif kind == 1:                                 # stripes
                mask = ((ys - cy).abs() <= extent) & ((xs - cx).abs() <= extent)
                period = float(rand(1)) * 4 + 3
                wave = torch.sin((xs + ys * float(rand(1))) * 2 * math.pi / period) * 60
                stripes = torch.tensor([60.0, 170.0, 70.0]).view(3, 1, 1) + wave
                image = torch.where(mask, stripes, image)
            else:                                           # rectangle
                mask = ((ys - cy).abs() <= extent / 2) & ((xs - cx).abs() <= extent)
                colour = torch.tensor([40.0, 70.0, 190.0]) + rand(3) * 50
                image = torch.where(mask, colour.view(3, 1, 1), image)
        noise = torch.randn(3, size, size, generator=generator) * 12
        images[i] = (image + noise).round().clamp(0, 255)
    return images


def build(seed: int = SEED) -> torch.nn.Module:
    """The int8_tiny model with seeded random weights, calibrated on seeded synthetic images."""
    torch.manual_seed(seed)
    model = build_model(ARCH, ARCH_ARGS)
    generator = torch.Generator().manual_seed(seed + 1)
    size = ARCH_ARGS["input_size"]
    batches = [synthetic_images(BATCH_SIZE, size, generator) for _ in range(CALIBRATION_BATCHES)]
    return calibrate(model, batches)


def activation_report(model: torch.nn.Module, seed: int = SEED) -> dict[str, tuple[float, float]]:
    """For every QAct: (fraction of zeros, fraction at the range's ends) of the integer outputs on
    fresh synthetic images."""
    images = synthetic_images(BATCH_SIZE, ARCH_ARGS["input_size"], torch.Generator().manual_seed(seed + 2))
    outputs = integer_forward(model, images, all_outputs=True)
    report = {}
    for name, module in model.named_modules():
        if isinstance(module, QAct):
            y = outputs[name]
            lo, hi = module.qrange
            report[name] = (float((y == 0).double().mean()), float(((y == hi) | ((y == lo) & (lo < 0))).double().mean()))
    return report


def write(path: Path, seed: int = SEED) -> str:
    """Build, calibrate and save the checkpoint at ``path``; return its sha256."""
    model = build(seed)
    meta = {
        "description": "int8_tiny example: UNTRAINED (seeded random weights); BatchNorm statistics and "
                       "activation clips calibrated on synthetic images. Its class map is meaningless; "
                       "it exists to exercise the toolchain.",
        "trained": False,
        "seed": seed,
        "calibration": {"images": "synthetic (examples/make_int8_tiny.py)", "batches": CALIBRATION_BATCHES,
                        "batch_size": BATCH_SIZE},
    }
    return save_checkpoint(model, path, ARCH, ARCH_ARGS, [3, ARCH_ARGS["input_size"], ARCH_ARGS["input_size"]],
                           meta)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="also build a second time and compare the bytes")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    digest = write(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, sha256 {digest})")
    for name, (zeros, saturated) in activation_report(build()).items():
        print(f"  {name:<8} zeros {zeros:6.1%}  saturated {saturated:6.1%}")
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            again = Path(tmp) / "again.pt"
            write(again)
            if again.read_bytes() != args.out.read_bytes():
                print("error: a second run wrote different bytes", file=sys.stderr)
                return 1
            print(f"second run: identical bytes (sha256 {hashlib.sha256(again.read_bytes()).hexdigest()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
