"""Per-channel constants of a stream folded to fewer lanes than channels, in registers that cycle with it."""

from amaranth.hdl import Mux, Signal

__all__ = ["group_registers"]


def group_registers(m, take, columns, *, lanes, groups):
    """Registers holding, for each of ``lanes`` lanes, the constants of the channel group of the next input beat.

    Beats cycle through the groups ``g = 0 … groups − 1`` (lane ``j`` of group ``g`` is channel ``g·lanes + j``)
    and wrap. ``columns`` lists the constants, each ``(shape, name, values)`` with ``values[c]`` that of channel
    ``c``; lane ``j`` gets one register per column, named ``{name}_{j}``, holding group 0's value after reset.
    Every ``take`` (an input transfer) loads the following group's values, so that no table lookup precedes
    the arithmetic that reads them. Returns the registers, per lane in column order.
    """
    registers = [[Signal(shape, name=f"{name}_{j}", init=values[j]) for shape, name, values in columns]
                 for j in range(lanes)]
    group = Signal(range(groups))
    with m.If(take):
        m.d.sync += group.eq(Mux(group == groups - 1, 0, group + 1))
        with m.Switch(group):
            for g in range(groups):
                with m.Case(g):
                    following = (g + 1) % groups * lanes
                    m.d.sync += [register.eq(values[following + j]) for j, lane in enumerate(registers)
                                 for register, (_, _, values) in zip(lane, columns)]
    return registers
