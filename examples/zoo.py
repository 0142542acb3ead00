"""Train every tiny preset of the model zoo on the synthetic set and tabulate the results.

For each preset it trains the float baseline (quantizers off), then the quantized model by
quantization-aware fine-tuning of that baseline (``hwseg train PRESET --init BASELINE``, half the
epochs at a third of the learning rate; same seed and data) — or, for the binary-weight presets
(``qat_from_float=False``), by quantization-aware training from scratch with the float schedule — evaluates both on the synthetic
validation split, and exports the quantized model's integer graph, which the golden model
evaluates too. The quantized checkpoints land in ``examples/<preset>.pt`` (``bfcn.pt`` and
``bfcn_int8.pt`` for ``bfcn_w1a2`` and ``bfcn_w8a8``); the float ones in a scratch folder. It prints the README's table and writes ``examples/zoo.json``.

    python examples/zoo.py [--presets int8_tiny bfcn_tiny ...] [--epochs N] [--scratch DIR]

Each preset's two trainings together take a few minutes on 2 CPU cores (timed and reported).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from hwseg.estimate.work import macs_per_frame, parameter_count
from hwseg.frontend import load_checkpoint, to_graph
from hwseg.models import PRESETS
from hwseg.train.session import TrainRequest, run_evaluation, run_training

HERE = Path(__file__).resolve().parent
# Presets whose example checkpoint has another name: the mission's `hwseg build bfcn.pt --board pynq`.
FILE_NAMES = {"bfcn_w1a2": "bfcn", "bfcn_w8a8": "bfcn_int8"}


def qat_epochs(float_epochs: int) -> int:
    return max(1, (float_epochs + 1) // 2)


def qat_lr(float_lr: float) -> float:
    return float_lr / 3


def qat_command(name: str, preset, epochs: int) -> str:
    """The `hwseg train` command that reproduces the preset's example checkpoint."""
    out = f"examples/{FILE_NAMES.get(name, name)}.pt"
    if preset.qat_from_float:
        return (f"hwseg train {name} --float --out {name}_float.pt --epochs {epochs} && hwseg train {name} "
                f"--init {name}_float.pt --epochs {qat_epochs(epochs)} --lr {qat_lr(preset.lr):g} --out {out}")
    return f"hwseg train {name} --epochs {epochs} --out {out}"


def train_preset(name: str, scratch: Path, epochs: int | None) -> dict:
    preset = PRESETS[name]
    epochs = epochs or preset.epochs
    out, baseline = HERE / f"{FILE_NAMES.get(name, name)}.pt", scratch / f"{name}_float.pt"
    log = lambda line: print(f"  {line}", file=sys.stderr)
    started = time.monotonic()
    run_training(TrainRequest(model=name, data="synthetic", epochs=epochs, out=baseline, quantized=False), log=log)
    float_seconds = time.monotonic() - started
    started = time.monotonic()
    if preset.qat_from_float:
        qat = TrainRequest(model=name, data="synthetic", epochs=qat_epochs(epochs), lr=qat_lr(preset.lr),
                           init=baseline, out=out)
    else:
        qat = TrainRequest(model=name, data="synthetic", epochs=epochs, out=out)
    run_training(qat, log=log)
    quant_seconds = time.monotonic() - started
    for stale in (out.with_name(out.name + ".train-state"),):
        stale.unlink(missing_ok=True)  # the example ships the model, not the optimizer
    baseline_results = run_evaluation(baseline, "synthetic", count=preset.val_count)
    results = run_evaluation(out, "synthetic", count=preset.val_count)
    loaded = load_checkpoint(out)
    graph = to_graph(loaded.model, tuple(loaded.input_shape), name=name)
    return {
        "preset": name, "file": out.name, "arch": preset.arch, "epochs": epochs, "qat": qat_command(name, preset, epochs), "input": list(loaded.input_shape),
        "float_miou": baseline_results["float"]["miou"],
        "quantized_miou": results["quantized"]["miou"],
        "integer_miou": results["integer"]["miou"],
        "parameters": parameter_count(graph), "macs_per_frame": macs_per_frame(graph),
        "train_seconds": round(float_seconds + quant_seconds, 1), "checkpoint_bytes": out.stat().st_size,
    }


def table(rows: list[dict]) -> str:
    lines = ["| preset | input | float mIoU | quantized mIoU | integer-graph mIoU | parameters | MACs/frame | "
             "training (float + QAT) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c, h, w = r["input"]
        lines.append(f"| `{r['preset']}` | {c}×{h}×{w} | {100 * r['float_miou']:.1f} | "
                     f"{100 * r['quantized_miou']:.1f} | {100 * r['integer_miou']:.1f} | {r['parameters']:,} | "
                     f"{r['macs_per_frame']:,} | {r['train_seconds']:.0f} s |")
    lines += ["", "Each example checkpoint is reproduced by:", ""]
    lines += [f"* `{r['preset']}`: `{qat_command(r['preset'], PRESETS[r['preset']], r['epochs'])}`" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=sorted(PRESETS), choices=sorted(PRESETS))
    parser.add_argument("--epochs", type=int, help="override each preset's epochs")
    parser.add_argument("--scratch", type=Path, help="folder for the float baselines (default: a temp folder)")
    args = parser.parse_args(argv)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="hwseg-zoo-"))
    scratch.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.presets:
        print(f"{name}:", file=sys.stderr)
        rows.append(train_preset(name, scratch, args.epochs))
    previous = json.loads((HERE / "zoo.json").read_text()) if (HERE / "zoo.json").exists() else {}
    previous.update({r["preset"]: r for r in rows})
    (HERE / "zoo.json").write_text(json.dumps(previous, indent=2, sort_keys=True) + "\n")
    print(table([previous[k] for k in sorted(previous)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
