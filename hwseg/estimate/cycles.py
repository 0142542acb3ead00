"""Cycle model of the streaming hardware.

Every block processes one beat per cycle at most. A sliding-window layer walks its padded
frame at one position per cycle; after emitting a window it may advance only once the
consumer has taken it, and a folded MAC array takes a window every ``F = NF·SF`` cycles.
So window ``i+1`` is taken ``max(gap_i, F)`` cycles after window ``i``, where ``gap_i`` is
the number of padded positions between the two windows, and a frame (whose gaps add up to
the padded frame size) takes ``Σ_i max(gap_i, F)`` cycles in steady state.

The network's period is that of its slowest layer; fps = clock / period.
"""

from __future__ import annotations

__all__ = ["window_layer_cycles"]


def window_layer_cycles(*, padded: tuple[int, int], out: tuple[int, int], kernel, stride, dilation,
                        cycles_per_window: int) -> int:
    """Steady-state cycles per frame of a sliding window feeding a consumer that needs
    ``cycles_per_window`` cycles per window."""
    (hp, wp), (ho, wo), (kh, kw), (sh, sw), (dh, dw) = padded, out, kernel, stride, dilation
    f = cycles_per_window
    first_row = (kh - 1) * dh
    first_col = (kw - 1) * dw
    in_row = wo - 1                        # gaps of sw between windows of one row
    row_gap = sh * wp - (wo - 1) * sw      # last window of a row to the first of the next
    frame_gap = hp * wp - (ho - 1) * sh * wp - (wo - 1) * sw  # last window to the next frame's first
    assert first_row + (ho - 1) * sh < hp and first_col + (wo - 1) * sw < wp
    return ho * in_row * max(sw, f) + (ho - 1) * max(row_gap, f) + max(frame_gap, f)
