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

__all__ = ["sliding_windows", "conv2d", "mul_shift", "max_pool", "argmax", "threshold", "add", "concat",
           "avg_pool", "conv_transpose2d", "upsample", "row_taps"]

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


def row_taps(x, taps, stride=1, padding=0, dilation=1) -> np.ndarray:
    """The rows a ``taps × 1`` window reads, stacked as channels: ``(N, taps·C, Ho, W)`` with
    ``[n, ky·C + c, oy, x] = x[n, c, oy·stride − padding + ky·dilation, x]``, 0 outside the frame
    (``Ho`` by torch's formula). A ``taps × kw`` convolution equals this followed by a ``1 × kw`` one
    whose weight for input channel ``ky·C + c`` is the original's ``[:, c, ky, :]``."""
    x = _tensor(x, "row_taps input")
    n, c, h, w = x.shape
    ho, _ = _output_size(h, w, (taps, 1), (stride, 1), (padding, 0), (dilation, 1), "row window")
    padded = np.zeros((n, c, h + 2 * padding, w), dtype=np.int64)
    padded[:, :, padding:padding + h] = x
    rows = [padded[:, :, ky * dilation:ky * dilation + (ho - 1) * stride + 1:stride] for ky in range(taps)]
    return np.concatenate(rows, axis=1)


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


def threshold(x, thresholds) -> np.ndarray:
    """Multi-threshold activation per channel ``c``: ``y = Σ_j [x ≥ T[c, j]]`` (``0 … n``).

    ``thresholds`` is ``(C, n)`` with every row ascending (non-decreasing), so the count is
    the number of thresholds ``≤ x``, found by binary search in the channel's row.
    """
    x = _tensor(x, "threshold input")
    t = _tensor(thresholds, "threshold thresholds", 2)
    n, c, h, w = x.shape
    if t.shape[0] != c or t.shape[1] < 1:
        raise IRError(f"threshold needs ({c}, n ≥ 1) thresholds for {c} channels, not shape {t.shape}")
    bad = np.argwhere(t[:, 1:] < t[:, :-1])
    if bad.size:
        ch, j = (int(v) for v in bad[0])
        raise IRError(f"threshold rows must be ascending: channel {ch} has {int(t[ch, j])} before {int(t[ch, j + 1])}")
    out = np.empty(x.shape, np.int64)
    for n0, n1, r0, r1 in _chunks(n, h, 8 * 2 * w):  # one channel of a row at a time
        for ch in range(c):
            # side="right": the number of thresholds T with T ≤ x, i.e. Σ_j [x ≥ T[c, j]].
            out[n0:n1, ch, r0:r1] = np.searchsorted(t[ch], x[n0:n1, ch, r0:r1], side="right")
    return out


def add(a, b, lo, hi) -> np.ndarray:
    """Residual addition ``clamp(a + b, lo, hi)`` of two tensors of the same shape."""
    a = _tensor(a, "add input a")
    b = _tensor(b, "add input b")
    if a.shape != b.shape:
        raise IRError(f"add needs two tensors of the same shape, not {a.shape} and {b.shape}")
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise IRError(f"add needs lo ≤ hi, not lo={lo}, hi={hi}")
    if _magnitude(a) + _magnitude(b) > _INT64_MAX:
        raise IRError(f"add could overflow int64: max |a| = {_magnitude(a)}, max |b| = {_magnitude(b)}")
    lo, hi = max(lo, _INT64_MIN), min(hi, _INT64_MAX)
    n, c, h, w = a.shape
    out = np.empty(a.shape, np.int64)
    for n0, n1, r0, r1 in _chunks(n, h, 8 * c * w):
        view = out[n0:n1, :, r0:r1]
        np.add(a[n0:n1, :, r0:r1], b[n0:n1, :, r0:r1], out=view)
        np.clip(view, lo, hi, out=view)
    return out


def concat(inputs) -> np.ndarray:
    """Channel concatenation, in order, of tensors with the same batch, height and width."""
    tensors = [_tensor(x, f"concat input {i}") for i, x in enumerate(inputs)]
    if len(tensors) < 1:
        raise IRError("concat needs at least one tensor")
    n, _, h, w = tensors[0].shape
    for i, x in enumerate(tensors[1:], 1):
        if (x.shape[0], x.shape[2], x.shape[3]) != (n, h, w):
            raise IRError(f"concat input {i} has shape {x.shape}; input 0 has {tensors[0].shape}: "
                          f"batch, height and width must agree")
    return np.concatenate(tensors, axis=1)


def avg_pool(x, kernel, stride=None, padding=0) -> np.ndarray:
    """Average pooling over windows of ``2^n`` elements, rounded half up: ``(N, C, Ho, Wo)`` with

    ``out[n, c, oy, ox] = (Σ_{ky, kx} x[n, c, oy·sh − ph + ky, ox·sw − pw + kx] + 2^(n−1)) >> n``

    where positions outside the frame read 0 and count as elements (torch ``avg_pool2d``
    with ``count_include_pad=True``); ``n = 0`` adds no rounding term. ``stride`` defaults
    to ``kernel``; padding may be at most half the kernel, as in torch.
    """
    x = _tensor(x, "avg_pool input")
    kernel = _pair(kernel, "avg_pool kernel")
    stride = kernel if stride is None else _pair(stride, "avg_pool stride")
    padding = _pair(padding, "avg_pool padding")
    n, c, h, w = x.shape
    ho, wo = _output_size(h, w, kernel, stride, padding, (1, 1), "average pool")
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    elements = kh * kw
    if elements & (elements - 1):
        raise IRError(f"avg_pool window {kh}×{kw} has {elements} elements; it must have a power-of-two "
                      f"number of elements")
    if 2 * ph > kh or 2 * pw > kw:
        raise IRError(f"avg_pool padding must be at most half the kernel {kernel}, not {padding}")
    shift = elements.bit_length() - 1
    if _magnitude(x) * elements + (1 << shift) > _INT64_MAX:
        raise IRError(f"avg_pool sums could overflow int64: max |x| = {_magnitude(x)}, {elements} elements")
    rounding = (1 << (shift - 1)) if shift else 0
    out = np.empty((n, c, ho, wo), np.int64)
    wp = w + 2 * pw
    for n0, n1, r0, r1 in _chunks(n, ho, 8 * c * (wp * sh + wo), 8 * c * wp * kh):
        band = _band(x[n0:n1], r0, r1, kh, sh, ph, 1, pw, 0)
        rows = r1 - r0
        view = out[n0:n1, :, r0:r1]
        view[...] = rounding
        for ky in range(kh):
            for kx in range(kw):
                view += _tap(band, ky, kx, rows, wo, sh, sw, 1, 1)
        view >>= shift
    return out


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def conv_transpose2d(x, weight, bias, stride, padding, output_padding, dilation, groups=1) -> np.ndarray:
    """Exact integer transposed convolution with torch ``conv_transpose2d`` semantics.

    ``weight`` is ``(C_in, C_out / G, kh, kw)``, ``bias`` ``(C_out,)`` or ``None``. Every input
    pixel scatters its products into the output, one kernel tap at a time:

    ``out[n, o, iy·sh − ph + ky·dh, ix·sw − pw + kx·dw] += weight[i, o − g·C_out/G, ky, kx] · x[n, i, iy, ix]``

    for each input channel ``i`` of group ``g = o // (C_out/G)``, dropping positions outside
    ``Ho = (H − 1)·sh − 2·ph + dh·(kh − 1) + oph + 1`` (and likewise ``Wo``); then ``+ bias[o]``.
    ``output_padding`` must be smaller than the stride or the dilation (as torch requires).
    No zeros are inserted: one tap's products land on a strided grid of output positions.
    Raises IRError if an accumulator could leave int64.
    """
    x = _tensor(x, "conv_transpose2d input")
    weight = _tensor(weight, "conv_transpose2d weight")
    n, c, h, w = x.shape
    cin, cout_g, kh, kw = weight.shape
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1 or cin % groups \
            or c != cin:
        raise IRError(f"conv_transpose2d groups={groups!r} does not fit weight {weight.shape} and {c} input "
                      f"channels: need C_in == weight.shape[0] and C_in % groups == 0")
    g = int(groups)
    cin_g, cout = cin // g, cout_g * g
    bias = np.zeros(cout, np.int64) if bias is None else _tensor(bias, "conv_transpose2d bias", 1)
    if bias.shape != (cout,):
        raise IRError(f"conv_transpose2d bias must have shape ({cout},), not {bias.shape}")
    (sh, sw), (ph, pw) = _pair(stride, "conv_transpose2d stride"), _pair(padding, "conv_transpose2d padding")
    (oph, opw) = _pair(output_padding, "conv_transpose2d output_padding")
    (dh, dw) = _pair(dilation, "conv_transpose2d dilation")
    if min(kh, kw, sh, sw, dh, dw) < 1 or min(ph, pw, oph, opw) < 0:
        raise IRError(f"conv_transpose2d needs kernel, stride, dilation ≥ 1 and padding, output_padding ≥ 0, "
                      f"not kernel={(kh, kw)}, stride={(sh, sw)}, padding={(ph, pw)}, "
                      f"output_padding={(oph, opw)}, dilation={(dh, dw)}")
    if oph >= max(sh, dh) or opw >= max(sw, dw):
        raise IRError(f"conv_transpose2d output_padding {(oph, opw)} must be smaller than the stride "
                      f"{(sh, sw)} or the dilation {(dh, dw)}")
    ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    wo = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    if ho < 1 or wo < 1:
        raise IRError(f"a {h}×{w} input gives an empty {ho}×{wo} output for a {kh}×{kw} transposed "
                      f"convolution with padding {(ph, pw)}")

    # Bound every partial sum: |Σ w·x + b| ≤ max|x| · Σ|w| + |b| per output channel.
    xmax, wmax, taps = _magnitude(x), _magnitude(weight), cin_g * kh * kw
    if max(xmax, 1) * wmax * taps + _magnitude(bias) > _INT64_MAX:
        raise IRError(f"conv_transpose2d accumulators could overflow int64: max |x| = {xmax}, "
                      f"max |w| = {wmax}, {taps} terms per output")
    wsum = np.abs(weight).reshape(g, cin_g, cout_g, kh * kw).sum(axis=(1, 3)).reshape(cout)
    bound = max((xmax * int(s) + abs(int(b)) for s, b in zip(wsum, bias)), default=0)
    use_float = bound < _FLOAT64_EXACT
    work = np.float64 if use_float else np.int64

    # taps[ky][kx] = (G, C_out/G, C_in/G)
    wt = weight.reshape(g, cin_g, cout_g, kh, kw).transpose(3, 4, 0, 2, 1).astype(work)
    xg = x.reshape(n, g, cin_g, h, w)
    out = np.empty((n, cout, ho, wo), np.int64)
    # Columns each tap reads and writes (the same for every band of rows).
    cols = []
    for kx in range(kw):
        off = kx * dw - pw                      # output column of input column 0
        ix0, ix1 = max(0, _ceil_div(-off, sw)), min(w, _ceil_div(wo - off, sw))
        cols.append((ix0, ix1, ix0 * sw + off))
    # Per output row: acc (work), plus the input rows and products of a tap (≤ one row each).
    row_bytes = 8 * (cout * wo + 2 * (c + cout) * w)
    for n0, n1, r0, r1 in _chunks(n, ho, row_bytes):
        frames, rows = n1 - n0, r1 - r0
        acc = np.zeros((frames, g, cout_g, rows, wo), work)
        for ky in range(kh):
            off = ky * dh - ph                  # output row of input row 0
            iy0, iy1 = max(0, _ceil_div(r0 - off, sh)), min(h, _ceil_div(r1 - off, sh))
            if iy0 >= iy1:
                continue
            y0 = iy0 * sh + off - r0            # first output row, relative to the band
            for kx in range(kw):
                ix0, ix1, x0 = cols[kx]
                if ix0 >= ix1:
                    continue
                ny, nx = iy1 - iy0, ix1 - ix0
                src = xg[n0:n1, :, :, iy0:iy1, ix0:ix1].reshape(frames, g, cin_g, ny * nx)
                if use_float:
                    prod = np.matmul(wt[ky, kx], src.astype(np.float64))
                else:
                    prod = np.einsum("goi,ngip->ngop", wt[ky, kx], src)
                acc[:, :, :, y0:y0 + (ny - 1) * sh + 1:sh, x0:x0 + (nx - 1) * sw + 1:sw] += \
                    prod.reshape(frames, g, cout_g, ny, nx)
        block = out[n0:n1, :, r0:r1]
        block[...] = acc.reshape(frames, cout, rows, wo)  # float64 → int64 is exact below 2^53
        block += bias[:, None, None]
    return out


def _linear_taps(size: int, factor: int):
    """Source indices and integer weights of torch's ``align_corners=False`` linear interpolation.

    Output ``d`` reads source position ``src = (d + 1/2)/f − 1/2``, clamped at 0; with
    ``a = max(2d + 1 − f, 0)`` that is ``a / (2f)``: index ``i0 = a // 2f``, fraction
    ``a mod 2f`` over ``2f``; ``i1 = i0 + 1`` except on the last source sample. Returns
    ``(i0, i1, w0, w1, bits)`` with ``w0 + w1 = 2^bits`` (``bits = 0`` when ``f = 1``).
    """
    d = np.arange(size * factor, dtype=np.int64)
    if factor == 1:
        return d, d, np.ones_like(d), np.zeros_like(d), 0
    denominator = 2 * factor                      # a power of two: factor is one
    a = np.maximum(2 * d + 1 - factor, 0)
    i0, frac = np.divmod(a, denominator)
    i1 = np.minimum(i0 + 1, size - 1)
    return i0, i1, denominator - frac, frac, denominator.bit_length() - 1


def upsample(x, factor, mode="nearest") -> np.ndarray:
    """Upsampling by integer factors ``(fh, fw)``: ``(N, C, H·fh, W·fw)``.

    * ``nearest``: ``out[n, c, y, x] = x[n, c, y // fh, x // fw]``.
    * ``bilinear``: torch ``interpolate(mode="bilinear", align_corners=False)`` rounded half up,
      in integers. Factors must be powers of two; along each axis output ``d`` mixes source
      samples ``i0, i1`` with weights ``w0 + w1 = 2^b`` (``b = log2 f + 1``, 0 for ``f = 1``,
      see ``_linear_taps``), and ``out = (Σ wy·wx·x + 2^(s−1)) >> s`` with ``s = b_h + b_w``
      (no rounding term when ``s = 0``).
    """
    x = _tensor(x, "upsample input")
    fh, fw = _pair(factor, "upsample factor")
    if min(fh, fw) < 1:
        raise IRError(f"upsample factor must be ≥ 1, not {(fh, fw)}")
    n, c, h, w = x.shape
    ho, wo = h * fh, w * fw
    out = np.empty((n, c, ho, wo), np.int64)
    if mode == "nearest":
        for n0, n1, r0, r1 in _chunks(n, ho, 8 * c * wo):
            rows = np.arange(r0, r1) // fh
            out[n0:n1, :, r0:r1] = np.repeat(x[n0:n1][:, :, rows], fw, axis=3)
        return out
    if mode != "bilinear":
        raise IRError(f"upsample mode must be 'nearest' or 'bilinear', not {mode!r}")
    if fh & (fh - 1) or fw & (fw - 1):
        raise IRError(f"upsample bilinear factors must be powers of two, not {(fh, fw)}")
    y0, y1, wy0, wy1, bh = _linear_taps(h, fh)
    x0, x1, wx0, wx1, bw = _linear_taps(w, fw)
    shift = bh + bw
    if _magnitude(x) << shift > _INT64_MAX // 2:
        raise IRError(f"upsample bilinear sums could overflow int64: max |x| = {_magnitude(x)}, weights 2^{shift}")
    rounding = (1 << (shift - 1)) if shift else 0
    # Per output row: the horizontal pass of (at most) two source rows and the result's temporaries.
    for n0, n1, r0, r1 in _chunks(n, ho, 8 * c * wo * 5):
        lo, hi = int(y0[r0]), int(y1[r1 - 1]) + 1          # source rows this band reads
        src = x[n0:n1, :, lo:hi]
        across = src[..., x0] * wx0 + src[..., x1] * wx1     # (frames, C, hi − lo, Wo), weights 2^bw
        a, b = y0[r0:r1] - lo, y1[r0:r1] - lo
        view = out[n0:n1, :, r0:r1]
        np.multiply(across[:, :, a], wy0[r0:r1, None], out=view)
        view += across[:, :, b] * wy1[r0:r1, None]
        view += rounding
        view >>= shift
    return out
