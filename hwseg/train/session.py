"""What ``hwseg train`` and ``hwseg eval`` do: pick the model and data, train resumably, report mIoU.

A training run writes the checkpoint ``OUT`` after every epoch (so an interrupted run loses at
most one epoch) and beside it ``OUT.train-state`` (optimizer state and history; tensors and
plain data only, read with ``weights_only=True``). ``--resume`` continues from there; a larger
``--epochs`` extends a finished run.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError, HwsegError
from ..models import ARCHITECTURES, PRESETS, build_model
from .loop import EpochResult, TrainSettings, evaluate_graph, evaluate_model, train

__all__ = ["TrainRequest", "run_training", "run_evaluation", "state_path"]


@dataclass(frozen=True)
class TrainRequest:
    model: str
    data: str
    epochs: int
    out: Path
    size: tuple[int, int] | None = None
    classes: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    arch_args: dict | None = None
    train_count: int | None = None
    val_count: int | None = None
    resume: bool = False
    quantized: bool = True
    integer_training: bool = False
    init: Path | None = None


def state_path(out: Path) -> Path:
    return out.with_name(out.name + ".train-state")


def _model_spec(request: TrainRequest):
    """(arch, arch_args, input size, classes, preset defaults) for the MODEL argument."""
    if request.model in PRESETS:
        preset = PRESETS[request.model]
        arch, arch_args = preset.arch, dict(preset.arch_args)
        defaults = preset
    elif request.model in ARCHITECTURES:
        arch, arch_args, defaults = request.model, {}, None
    else:
        known = ", ".join(sorted(PRESETS)) + "; architectures: " + ", ".join(sorted(ARCHITECTURES))
        raise HwsegError(f"unknown model {request.model!r}; presets: {known}")
    arch_args.update(request.arch_args or {})
    if request.classes is not None:
        arch_args["classes"] = request.classes
    size = request.size or (defaults.input_size if defaults else None)
    if size is None:
        raise HwsegError(f"architecture {arch!r} has no preset input size; give one with --size HxW")
    return arch, arch_args, tuple(size), defaults


def _datasets(spec: str, size, classes: int, stride: int, seed: int, train_count, val_count):
    from ..data import open_dataset

    common = dict(size=size, classes=classes, seed=seed, stride=stride)
    train_set = open_dataset(spec, split="train", count=train_count, **common)
    val_set = open_dataset(spec, split="val", count=val_count, **common)
    return train_set, val_set


def _save(model, out: Path, arch, arch_args, size, history, optimizer, request, settings):
    from ..frontend import save_checkpoint

    meta = {"train": {"epochs_done": history[-1].epoch, "history": [r.as_dict() for r in history],
                      "data": request.data, "quantized": request.quantized,
                      "integer_training": request.integer_training,
                      "settings": {"epochs": settings.epochs, "batch_size": settings.batch_size, "lr": settings.lr,
                                   "seed": settings.seed}}}
    save_checkpoint(model, out, arch, arch_args, (3, *size), meta=meta)
    state = {"optimizer": optimizer.state_dict(), "epochs_done": history[-1].epoch}
    tmp = state_path(out).with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, state_path(out))


def run_training(request: TrainRequest, log=print) -> list[EpochResult]:
    from ..frontend import load_checkpoint
    from ..quant import quantization

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    arch, arch_args, size, preset = _model_spec(request)
    torch.manual_seed(request.seed)  # the initial weights depend on the seed only
    model = build_model(arch, arch_args)
    classes = arch_args.get("classes", getattr(model, "classes", None))
    stride = getattr(model, "stride", 1)
    settings = TrainSettings(epochs=request.epochs,
                             batch_size=request.batch_size or (preset.batch_size if preset else 16),
                             lr=request.lr or (preset.lr if preset else 3e-3), seed=request.seed)
    train_set, val_set = _datasets(request.data, size, classes, stride, request.seed,
                                   request.train_count or (preset.train_count if preset else None),
                                   request.val_count or (preset.val_count if preset else None))
    history: list[EpochResult] = []
    start, optimizer_state = 0, None
    if request.init is not None and not request.resume:
        initial = load_checkpoint(request.init)
        if initial.arch != arch or initial.arch_args != arch_args:
            raise CheckpointError(f"cannot start from {request.init}: it holds {initial.arch!r} with other "
                                  f"arguments; train it with the same MODEL and --arch-args")
        model.load_state_dict(initial.model.state_dict())  # e.g. QAT fine-tuning of a float baseline
    if request.resume:
        if not request.out.exists() or not state_path(request.out).exists():
            raise CheckpointError(f"cannot resume: {request.out} or {state_path(request.out)} is missing; "
                                  f"start without --resume")
        loaded = load_checkpoint(request.out)
        if loaded.arch != arch:
            raise CheckpointError(f"cannot resume: {request.out} holds a {loaded.arch!r} model, not {arch!r}")
        model.load_state_dict(loaded.model.state_dict())
        state = torch.load(state_path(request.out), map_location="cpu", weights_only=True)
        start, optimizer_state = int(state["epochs_done"]), state["optimizer"]
        history = [EpochResult(**{k: v for k, v in r.items()}) for r in loaded.meta["train"]["history"]]
        if start >= settings.epochs:
            log(f"{request.out} has already trained {start} epochs; nothing to do (raise --epochs to go on)")
            return history

    def after_epoch(result: EpochResult, optimizer):
        history.append(result)
        _save(model, request.out, arch, arch_args, size, history, optimizer, request, settings)
        log(f"epoch {result.epoch}/{settings.epochs}: loss {result.loss:.4f}, validation mIoU "
            f"{100 * result.miou:.2f} %")

    hooks = contextlib.nullcontext()
    if request.integer_training:
        from ..quant import integer_training

        try:
            # act_bits 9: a residual branch carries its signed pre-add value at the skip's 8-bit grid,
            # one bit wider than the activations themselves (int_fcn's skip fusions).
            hooks = integer_training(model, act_bits=9)
        except ValueError as error:
            raise HwsegError(f"--integer-training: {error}; use an architecture built for it, such as "
                             f"int_fcn_tiny") from None
    with quantization(model, enabled=request.quantized), hooks:
        train(model, train_set, val_set, classes, settings, start_epoch=start, optimizer_state=optimizer_state,
              on_epoch=after_epoch)
    return history


def run_evaluation(path: Path, data: str, *, size=None, count=None, seed: int = 0, split: str = "val") -> dict:
    """mIoU and per-class IoU of the checkpoint as a float model, as the quantized model and as the
    exported integer graph run by the golden model."""
    from ..data import open_dataset
    from ..frontend import load_checkpoint, to_graph
    from ..quant import quantization

    loaded = load_checkpoint(path)
    model = loaded.model
    classes = loaded.arch_args.get("classes", getattr(model, "classes", None))
    size = tuple(size or loaded.input_shape[1:])
    dataset = open_dataset(data, split=split, size=size, classes=classes, seed=seed, count=count,
                           stride=getattr(model, "stride", 1))
    results = {}
    with quantization(model, enabled=False):
        results["float"] = evaluate_model(model, dataset, classes, label="float")
    results["quantized"] = evaluate_model(model, dataset, classes, label="quantized")
    graph = to_graph(model, (3, *size), name=Path(path).stem)
    results["integer"] = evaluate_graph(graph, dataset, classes, label="integer graph")
    return {name: {"miou": r.miou, "per_class": [float(v) for v in r.per_class]} for name, r in results.items()}


def format_evaluation(results: dict) -> str:
    rows = ["model view        mIoU   per-class IoU (%)"]
    for name, r in results.items():
        per = " ".join("  -  " if v != v else f"{100 * v:5.1f}" for v in r["per_class"])
        rows.append(f"{name:<14} {100 * r['miou']:6.2f}   {per}")
    return "\n".join(rows)

