"""NumPy integer reference of the hwseg ops (design.md §2).

Tensors are ``int64`` arrays shaped ``(N, C, H, W)``. Every function is vectorized over
pixels (the only Python loops run over kernel taps and over chunks of rows), and big
tensors are processed in chunks of output rows so that temporaries stay bounded
(about ``_CHUNK_BYTES`` per chunk, a few chunk-sized buffers live at once) whatever the
frame size.

This module is the independent reference for the hardware: it imports only NumPy and
``hwseg.ir`` and shares no rounding, width or packing helper with ``hwseg.hw``.
Invalid arguments raise :class:`hwseg.ir.IRError` with a message naming the problem.
"""

from __future__ import annotations

import numpy as np

from hwseg.ir import IRError, conv_output_size

__all__ = ["sliding_windows", "conv2d", "mul_shift", "max_pool", "argmax"]

#: Target size in bytes of the temporaries of one chunk (a chunk is a group of whole
#: frames or a band of output rows of one frame). Tests lower it to exercise chunking.
_CHUNK_BYTES = 32 << 20

#: Below this magnitude every integer is exact in float64, and so is every sum of such
#: integers whose partial sums stay below it. ``conv2d`` multiplies in float64 (BLAS,
#: much faster than NumPy's integer products) only when it has proved that bound, and
#: in int64 otherwise; the result is the same exact integer either way.
_FLOAT64_EXACT = 1 << 53

_INT64_MIN = int(np.iinfo(np.int64).min)
_INT64_MAX = int(np.iinfo(np.int64).max)


# --------------------------------------------------------------------------- helpers

def _tensor(x, what: str, ndim: int = 4) -> np.ndarray:
    """``x`` as an ``int64`` array of ``ndim`` dimensions, or an IRError."""
    array = np.asarray(x)
    if array.ndim != ndim:
        raise IRError(f"{what} must have {ndim} dimensions, not shape {array.shape}")
    if array.dtype.kind not in "iub":
        raise IRError(f"{what} must hold integers, not {array.dtype}")
    if array.dtype == np.uint64 and array.size and int(array.max()) > _INT64_MAX:
        raise IRError(f"{what} holds {int(array.max())}, which does not fit int64")
    return array.astype(np.int64, copy=False)


def _pair(value, what: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        value = (value, value)
    try:
        value = tuple(value)
    except TypeError:
        raise IRError(f"{what} must be an int or a pair of ints, not {value!r}") from None
    if len(value) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        raise IRError(f"{what} must be an int or a pair of ints, not {value!r}")
    return int(value[0]), int(value[1])


def _magnitude(array: np.ndarray) -> int:
    """The largest ``|v|`` in ``array`` as a Python int (0 if empty), without int64 overflow."""
    if array.size == 0:
        return 0
    return max(-int(array.min()), int(array.max()))


def _chunks(frames: int, rows: int, row_bytes: int, fixed_bytes: int = 0):
    """Split ``frames × rows`` output rows into chunks ``(n0, n1, r0, r1)``.

    ``row_bytes`` is the temporary memory one output row of one frame costs and
    ``fixed_bytes`` what a chunk costs on top of its rows (e.g. the halo of a band).
    A chunk is several whole frames if a frame fits in ``_CHUNK_BYTES``, otherwise a
    band of rows of one frame (at least one row).
    """
    frame_bytes = rows * row_bytes + fixed_bytes
    if frame_bytes <= _CHUNK_BYTES:
        step = max(1, _CHUNK_BYTES // max(1, frame_bytes))
        for n0 in range(0, frames, step):
            yield n0, min(frames, n0 + step), 0, rows
    else:
        step = max(1, (_CHUNK_BYTES - fixed_bytes) // max(1, row_bytes))
        for n0 in range(frames):
            for r0 in range(0, rows, step):
                yield n0, n0 + 1, r0, min(rows, r0 + step)


def _band(x: np.ndarray, r0: int, r1: int, kh: int, sh: int, ph: int, dh: int, pw: int,
          pad_value: int) -> np.ndarray:
    """The padded input rows that output rows ``r0 … r1 − 1`` of a window op read.

    Returns ``(N, C, (r1 − r0 − 1)·sh + (kh − 1)·dh + 1, W + 2·pw)``: row ``i`` of the band is
    padded row ``r0·sh + i`` (input row ``r0·sh − ph + i``), ``pad_value`` outside the frame.
    """
    n, c, h, w = x.shape
    top = r0 * sh - ph
    height = (r1 - r0 - 1) * sh + (kh - 1) * dh + 1
    band = np.full((n, c, height, w + 2 * pw), pad_value, dtype=np.int64)
    y0, y1 = max(0, top), min(h, top + height)
    if y0 < y1:
        band[:, :, y0 - top:y1 - top, pw:pw + w] = x[:, :, y0:y1, :]
    return band


def _tap(band: np.ndarray, ky: int, kx: int, rows: int, wo: int, sh: int, sw: int, dh: int, dw: int):
    """View ``(N, C, rows, wo)`` of ``band``: element ``[n, c, oy, ox] = band[n, c, oy·sh + ky·dh, ox·sw + kx·dw]``."""
    y, x = ky * dh, kx * dw
    return band[:, :, y:y + (rows - 1) * sh + 1:sh, x:x + (wo - 1) * sw + 1:sw]


def _output_size(h, w, kernel, stride, padding, dilation, what):
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    if min(kh, kw, sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise IRError(f"{what} needs kernel, stride, dilation ≥ 1 and padding ≥ 0, not kernel={kernel}, "
                      f"stride={stride}, padding={padding}, dilation={dilation}")
    ho = conv_output_size(h, kh, sh, ph, dh)
    wo = conv_output_size(w, kw, sw, pw, dw)
    if ho < 1 or wo < 1:
        raise IRError(f"a {h}×{w} input is too small for a {kh}×{kw} {what} with dilation {dilation} "
                      f"and padding {padding}")
    return ho, wo


# --------------------------------------------------------------------------- ops

def sliding_windows(x, kernel, stride, padding, dilation, pad_value=0) -> np.ndarray:
    """All windows of ``x``: ``(N, Ho, Wo, kh, kw, C)`` with
    ``[n, oy, ox, ky, kx, c] = x[n, c, oy·sh − ph + ky·dh, ox·sw − pw + kx·dw]``,
    ``pad_value`` where that position lies outside the frame.

    ``Ho``, ``Wo`` follow torch's formula (``conv_output_size``). The result is a read-only
    strided view of one padded, channels-last copy of ``x`` (copy it to write to it).
    """
    x = _tensor(x, "sliding_windows input")
    kernel, stride = _pair(kernel, "kernel"), _pair(stride, "stride")
    padding, dilation = _pair(padding, "padding"), _pair(dilation, "dilation")
    n, c, h, w = x.shape
    ho, wo = _output_size(h, w, kernel, stride, padding, dilation, "window")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    if not _INT64_MIN <= int(pad_value) <= _INT64_MAX:
        raise IRError(f"pad_value must fit int64, not {pad_value!r}")
    band = _band(x, 0, ho, kh, sh, ph, dh, pw, int(pad_value))
    nhwc = np.ascontiguousarray(band.transpose(0, 2, 3, 1))  # (N, rows, W + 2pw, C)
    s_n, s_y, s_x, s_c = nhwc.strides
    windows = np.lib.stride_tricks.as_strided(
        nhwc, shape=(n, ho, wo, kh, kw, c),
        strides=(s_n, s_y * sh, s_x * sw, s_y * dh, s_x * dw, s_c), writeable=False)
    return windows


def conv2d(x, weight, bias, stride, padding, dilation, groups=1) -> np.ndarray:
    """Exact integer convolution with torch ``conv2d`` semantics: ``(N, C_out, Ho, Wo)`` with

    ``out[n, o, oy, ox] = bias[o] + Σ_{i, ky, kx} weight[o, i, ky, kx] · x[n, g·C_in/G + i, oy·sh − ph + ky·dh, ox·sw − pw + kx·dw]``

    where ``g = o // (C_out / G)`` is the group of output channel ``o``, ``G = groups``, and
    positions outside the frame read 0. ``weight`` is ``(C_out, C_in / G, kh, kw)``; ``bias`` is
    ``(C_out,)`` or ``None`` (no bias). Raises IRError if an accumulator could leave int64.
    """
    x = _tensor(x, "conv2d input")
    weight = _tensor(weight, "conv2d weight")
    n, c, h, w = x.shape
    cout, cin_g, kh, kw = weight.shape
    if not isinstance(groups, (int, np.integer)) or groups < 1 or cout % groups or c != cin_g * groups:
        raise IRError(f"conv2d groups={groups!r} does not fit weight {weight.shape} and {c} input channels: "
                      f"need C_out % groups == 0 and C_in == weight.shape[1] · groups")
    groups = int(groups)
    bias = np.zeros(cout, np.int64) if bias is None else _tensor(bias, "conv2d bias", 1)
    if bias.shape != (cout,):
        raise IRError(f"conv2d bias must have shape ({cout},), not {bias.shape}")
    stride, padding = _pair(stride, "conv2d stride"), _pair(padding, "conv2d padding")
    dilation = _pair(dilation, "conv2d dilation")
    ho, wo = _output_size(h, w, (kh, kw), stride, padding, dilation, "convolution")
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation

    # Bound every partial sum: |Σ w·x + b| ≤ max|x| · Σ|w| + |b| per output channel.
    xmax, wmax, taps = _magnitude(x), _magnitude(weight), cin_g * kh * kw
    if max(xmax, 1) * wmax * taps + _magnitude(bias) > _INT64_MAX:
        raise IRError(f"conv2d accumulators could overflow int64: max |x| = {xmax}, max |w| = {wmax}, "
                      f"{taps} terms per output")
    wsum = np.abs(weight).reshape(cout, -1).sum(axis=1)  # exact: max|w| · taps < 2^63 was checked
    bound = max((xmax * int(s) + abs(int(b)) for s, b in zip(wsum, bias)), default=0)
    use_float = bound < _FLOAT64_EXACT
    work = np.float64 if use_float else np.int64

    g, cout_g = groups, cout // groups
    # taps[ky][kx] = (G, C_out/G, C_in/G)
    wt = weight.reshape(g, cout_g, cin_g, kh, kw).transpose(3, 4, 0, 1, 2).astype(work)
    out = np.empty((n, cout, ho, wo), np.int64)
    wp = w + 2 * pw
    # Per output row: the band, the tap copies (int64 and float64), acc and the product.
    row_bytes = 8 * (c * wp * sh + 2 * c * wo + 2 * cout * wo)
    fixed_bytes = 8 * c * wp * ((kh - 1) * dh + 1)
    for n0, n1, r0, r1 in _chunks(n, ho, row_bytes, fixed_bytes):
        band = _band(x[n0:n1], r0, r1, kh, sh, ph, dh, pw, 0)
        rows, frames = r1 - r0, n1 - n0
        acc = np.zeros((frames, g, cout_g, rows * wo), work)
        for ky in range(kh):
            for kx in range(kw):
                tap = _tap(band, ky, kx, rows, wo, sh, sw, dh, dw).reshape(frames, g, cin_g, rows * wo)
                if use_float:
                    acc += np.matmul(wt[ky, kx], tap.astype(np.float64))
                else:
                    acc += np.einsum("goi,ngip->ngop", wt[ky, kx], tap)
        block = out[n0:n1, :, r0:r1, :]
        block[...] = acc.reshape(frames, cout, rows, wo)  # float64 → int64 is exact below 2^53
        block += bias[:, None, None]
    return out


def mul_shift(acc, multiplier, shift, lo, hi) -> np.ndarray:
    """Requantization per channel ``c``: ``clamp((acc·M[c] + 2^(s−1)) >> s, lo, hi)``.

    ``>>`` is an arithmetic shift (floor), so the result is ``acc·M[c] / 2^s`` rounded half up;
    ``s = 0`` adds no rounding term. ``multiplier`` is ``(C,)``; ``shift`` is an integer in
    0…62. Raises IRError if ``|acc|·|M|`` could exceed 2^62 (the product must fit int64).
    """
    acc = _tensor(acc, "mul_shift accumulator")
    multiplier = _tensor(multiplier, "mul_shift multiplier", 1)
    n, c, h, w = acc.shape
    if multiplier.shape != (c,):
        raise IRError(f"mul_shift needs one multiplier per channel, {c}, not shape {multiplier.shape}")
    if not isinstance(shift, (int, np.integer)) or isinstance(shift, bool) or not 0 <= shift <= 62:
        raise IRError(f"mul_shift shift must be an integer in 0…62, not {shift!r}")
    shift, lo, hi = int(shift), int(lo), int(hi)
    if lo > hi:
        raise IRError(f"mul_shift needs lo ≤ hi, not lo={lo}, hi={hi}")
    amax, mmax = _magnitude(acc), _magnitude(multiplier)
    if amax * mmax > 1 << 62:
        raise IRError(f"mul_shift product could overflow: max |acc| = {amax} times max |M| = {mmax} "
                      f"exceeds 2^62")
    rounding = (1 << (shift - 1)) if shift > 0 else 0
    # The clamp bounds only matter inside int64, where every product lies.
    lo, hi = max(lo, _INT64_MIN), min(hi, _INT64_MAX)
    m = multiplier[:, None, None]
    out = np.empty(acc.shape, np.int64)
    for n0, n1, r0, r1 in _chunks(n, h, 8 * 2 * c * w):
        y = acc[n0:n1, :, r0:r1] * m
        y += rounding
        y >>= shift
        np.clip(y, lo, hi, out=out[n0:n1, :, r0:r1])
    return out


def max_pool(x, kernel, stride=None, padding=0) -> np.ndarray:
    """Integer max pooling with torch ``max_pool2d`` semantics: ``(N, C, Ho, Wo)`` with

    ``out[n, c, oy, ox] = max_{ky, kx} x[n, c, oy·sh − ph + ky, ox·sw − pw + kx]`` over the positions
    inside the frame (padding never wins). ``stride`` defaults to ``kernel``; as in torch,
    padding may be at most half the kernel, so every window holds a real element.
    """
    x = _tensor(x, "max_pool input")
    kernel = _pair(kernel, "max_pool kernel")
    stride = kernel if stride is None else _pair(stride, "max_pool stride")
    padding = _pair(padding, "max_pool padding")
    n, c, h, w = x.shape
    ho, wo = _output_size(h, w, kernel, stride, padding, (1, 1), "max-pool")
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if 2 * ph > kh or 2 * pw > kw:
        raise IRError(f"max_pool padding must be at most half the kernel {kernel}, not {padding}")
    out = np.empty((n, c, ho, wo), np.int64)
    wp = w + 2 * pw
    for n0, n1, r0, r1 in _chunks(n, ho, 8 * c * (wp * sh + wo), 8 * c * wp * kh):
        band = _band(x[n0:n1], r0, r1, kh, sh, ph, 1, pw, _INT64_MIN)
        rows = r1 - r0
        view = out[n0:n1, :, r0:r1]
        view[...] = _tap(band, 0, 0, rows, wo, sh, sw, 1, 1)
        for ky in range(kh):
            for kx in range(kw):
                if ky or kx:
                    np.maximum(view, _tap(band, ky, kx, rows, wo, sh, sw, 1, 1), out=view)
    return out


def argmax(x) -> np.ndarray:
    """Index of the first maximum over channels (``numpy.argmax``): ``(N, 1, H, W)`` int64."""
    x = _tensor(x, "argmax input")
    n, c, h, w = x.shape
    if c < 1:
        raise IRError("argmax needs at least one channel")
    out = np.empty((n, 1, h, w), np.int64)
    for n0, n1, r0, r1 in _chunks(n, h, 8 * 2 * c * w):
        out[n0:n1, 0, r0:r1] = np.argmax(x[n0:n1, :, r0:r1], axis=1)
    return out
