"""Integer inference in torch: exactly what the hardware computes, from the folded integers.

Independent of :mod:`hwseg.golden` (which it is checked against) and of the IR executors:

* convolution: ``torch.nn.functional.conv2d`` (``conv_transpose2d`` for a transposed one) in float64
  on integer-valued tensors — exact, since the folding guarantees every accumulator stays below 2^53;
* MulShift: int64 ``(acc·M + 2^(s−1)) >> s`` (``>>`` is arithmetic, i.e. floor), then clamp;
* Threshold: per channel, the number of thresholds ``≤ acc`` (``torch.searchsorted``, right side);
* max pooling: ``max_pool2d`` in float64 (exact on integers);
* average pooling: the window sum (``avg_pool2d`` with ``divisor_override=1`` in float64, exact), then
  int64 ``(Σ + 2^(n−1)) >> n``;
* upsampling: nearest by ``repeat_interleave``; bilinear by torch's own ``interpolate(align_corners=False)``
  in float64 — exact for power-of-two factors, whose weights are binary fractions — scaled by ``2^s`` to
  the integer ``Σ w·x`` and rounded half up as ``(Σ w·x + 2^(s−1)) >> s``;
* add: int64 ``clamp(a + b, lo, hi)``; concat: ``torch.cat`` over channels;
* argmax: ``torch.argmax`` over channels (the first maximum).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .lowering import (AddStep, ArgMaxStep, AvgPoolStep, ConcatStep, ConvStep, InputStep, IntegerProgram, PoolStep,
                       RequantStep, ThresholdStep, UpsampleStep, lower_model)

__all__ = ["integer_forward", "run_program"]


def _as_input(x, bits: int) -> tuple[torch.Tensor, bool]:
    x = torch.as_tensor(x)
    single = x.dim() == 3
    if single:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"the integer model takes one image (C, H, W) or a batch (N, C, H, W), "
                         f"not a tensor of shape {tuple(x.shape)}")
    if x.is_floating_point():
        if not bool(torch.all(x == torch.round(x))):
            raise ValueError("the integer model takes integer pixel values (a float tensor holding integers)")
    hi = (1 << bits) - 1
    x = x.to(torch.int64)
    if x.numel() and (int(x.min()) < 0 or int(x.max()) > hi):
        raise ValueError(f"pixel values must lie in 0…{hi}, not {int(x.min())}…{int(x.max())}")
    return x, single


def run_program(program: IntegerProgram, x, all_outputs: bool = False):
    """Run ``program`` on ``x``: one image ``(C, H, W)`` or a batch ``(N, C, H, W)`` of integers.

    Returns the int64 output tensor (same form as ``x``), or with ``all_outputs=True`` a dict
    from every step name, in program order, to its int64 tensor.
    """
    values: dict[str, torch.Tensor] = {}
    single = False
    for step in program:
        if isinstance(step, InputStep):
            out, single = _as_input(x, step.bits)
        elif isinstance(step, ConvStep):
            c = step.conv
            x = values[step.inputs[0]].to(torch.float64)
            weight = torch.from_numpy(c.weight.copy()).to(torch.float64)
            bias = torch.from_numpy(c.bias.copy()).to(torch.float64)
            if c.transposed:
                acc = F.conv_transpose2d(x, weight, bias, stride=c.stride, padding=c.padding,
                                         output_padding=c.output_padding, groups=c.groups, dilation=c.dilation)
            else:
                acc = F.conv2d(x, weight, bias, stride=c.stride, padding=c.padding, dilation=c.dilation,
                               groups=c.groups)
            out = torch.round(acc).to(torch.int64)
        elif isinstance(step, RequantStep):
            r = step.requant
            acc = values[step.inputs[0]]
            m = torch.from_numpy(r.multiplier.copy()).view(1, -1, 1, 1)
            product = acc * m
            if r.shift > 0:
                product = (product + (1 << (r.shift - 1))) >> r.shift
            out = product.clamp(r.lo, r.hi)
        elif isinstance(step, ThresholdStep):
            acc = values[step.inputs[0]]
            t = torch.from_numpy(step.thresholds.thresholds.copy())
            n, c, h, w = acc.shape
            flat = acc.permute(1, 0, 2, 3).reshape(c, -1).contiguous()
            counts = torch.searchsorted(t, flat, right=True)   # Σ_j [acc ≥ T[c, j]]
            out = counts.reshape(c, n, h, w).permute(1, 0, 2, 3).contiguous()
        elif isinstance(step, PoolStep):
            out = F.max_pool2d(values[step.inputs[0]].to(torch.float64), step.kernel, step.stride,
                               step.padding).to(torch.int64)
        elif isinstance(step, AvgPoolStep):
            (kh, kw) = step.kernel
            shift = (kh * kw).bit_length() - 1
            total = F.avg_pool2d(values[step.inputs[0]].to(torch.float64), step.kernel, step.stride, step.padding,
                                 ceil_mode=False, count_include_pad=True, divisor_override=1)
            total = torch.round(total).to(torch.int64)
            out = (total + (1 << (shift - 1))) >> shift if shift else total
        elif isinstance(step, UpsampleStep):
            x = values[step.inputs[0]]
            fh, fw = step.factor
            if step.mode == "nearest":
                out = x.repeat_interleave(fh, dim=2).repeat_interleave(fw, dim=3)
            else:
                shift = sum(f.bit_length() for f in step.factor if f > 1)
                exact = F.interpolate(x.to(torch.float64), scale_factor=(float(fh), float(fw)), mode="bilinear",
                                      align_corners=False) * float(1 << shift)
                out = torch.round(exact).to(torch.int64)
                if shift:
                    out = (out + (1 << (shift - 1))) >> shift
        elif isinstance(step, AddStep):
            a, b = values[step.inputs[0]], values[step.inputs[1]]
            if a.shape != b.shape:
                raise ValueError(f"step {step.name!r} adds tensors of shapes {tuple(a.shape)} and {tuple(b.shape)}")
            out = (a + b).clamp(step.lo, step.hi)
        elif isinstance(step, ConcatStep):
            out = torch.cat([values[name] for name in step.inputs], dim=1)
        elif isinstance(step, ArgMaxStep):
            out = torch.argmax(values[step.inputs[0]], dim=1, keepdim=True)
        else:
            raise TypeError(f"unknown integer step {step!r}")
        values[step.name] = out
    if all_outputs:
        return {name: (v[0] if single else v) for name, v in values.items()}
    out = values[program.output]
    return out[0] if single else out


@torch.no_grad()
def integer_forward(model: torch.nn.Module, x, all_outputs: bool = False, threshold_bits: int | None = None):
    """The hardware's integer result for ``model`` (an hwseg.quant model) on image(s) ``x``.

    ``x`` holds integer pixels 0…255: one image ``(C, H, W)`` or a batch ``(N, C, H, W)``, as a
    float or integer tensor. The model is folded (:func:`hwseg.quant.lowering.lower_model`) and
    executed with torch integer ops; the result is int64 (the class map when the model ends in
    ArgMax). ``all_outputs=True`` returns every step's tensor by name (the IR node names).
    ``threshold_bits`` folds low-bit activations into thresholds (see :func:`lower_model`; ``None``:
    the model's ``threshold_bits`` attribute, else never).
    """
    x = torch.as_tensor(x)
    channels = x.shape[-3] if x.dim() in (3, 4) else None
    program = lower_model(model, input_channels=channels, threshold_bits=threshold_bits)
    return run_program(program, x, all_outputs=all_outputs)
