"""The real-resolution design ``pytest sim/`` proves and ``bench/sim_speed.py`` times.

The zoo's ``int_fcn`` (width 8, 3 stages, one convolution per stage, one skip, integer BatchNorm,
8 classes), calibrated on seeded random images, built for pynq-z2 at a 256×512 input (HxW):
folded to fit the board, about 0.5 M cycles per frame.
"""

from pathlib import Path

ARCH = "int_fcn"
ARGS = {"classes": 8, "width": 8, "stages": 3, "convs": 1, "skips": 1, "integer_bn": True}
BOARD = "pynq-z2"
INPUT = (256, 512)


def int_fcn_checkpoint(folder) -> Path:
    """Write the calibrated checkpoint into ``folder`` (seeded: the same file every time); its path."""
    import torch

    from hwseg.frontend import save_checkpoint
    from hwseg.models import build_model
    from hwseg.quant import calibrate

    path = Path(folder) / "int_fcn_w8s3.pt"
    torch.manual_seed(0)
    model = build_model(ARCH, ARGS)
    calibrate(model, [torch.randint(0, 256, (2, 3, 64, 128)).float()])
    save_checkpoint(model.eval(), path, ARCH, ARGS, (3, 64, 128))
    return path
