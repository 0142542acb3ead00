"""Constructor-parameter checks, integer-range helpers and the popcount tree shared by the hardware blocks.

Every check names the parameter and shows the bad value as ``not {value!r}``.
"""

from amaranth.hdl import Shape, signed, unsigned


def is_int(value):
    """Whether ``value`` is an ``int`` (``bool`` is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _int_kind(minimum):
    if minimum == 1:
        return "a positive integer"
    if minimum == 0:
        return "a non-negative integer"
    return f"an integer >= {minimum}"


def check_int(name, value, minimum=1):
    """``value`` if it is an int ``>= minimum``, else ``ValueError``."""
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be {_int_kind(minimum)}, not {value!r}")
    return value


def check_pair(name, value, minimum=1):
    """``value`` as a tuple if it is a pair (tuple or list) of ints ``>= minimum``, else ``ValueError``."""
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or any(not is_int(v) or v < minimum for v in value)):
        kinds = {1: "positive integers", 0: "non-negative integers"}.get(minimum, f"integers >= {minimum}")
        raise ValueError(f"{name} must be a pair of {kinds}, not {value!r}")
    return tuple(value)


def cast_shape(name, value):
    """``Shape.cast(value)`` if it is at least 1 bit wide; ``TypeError`` if not a shape, else ``ValueError``."""
    try:
        shape = Shape.cast(value)
    except TypeError:
        raise TypeError(f"{name} must be a shape, not {value!r}") from None
    if shape.width < 1:
        raise ValueError(f"{name} must be at least 1 bit wide, not {value!r}")
    return shape


def check_shape(name, value):
    """``value`` if it is a :class:`Shape` (not merely shape-castable) at least 1 bit wide, else ``TypeError``."""
    if not isinstance(value, Shape) or value.width < 1:
        raise TypeError(f"{name} must be an Amaranth shape unsigned(b) or signed(b) with b >= 1, "
                        f"not {value!r}")
    return value


def range_of(shape):
    """``(lo, hi)``: the least and greatest integer of ``shape``."""
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


def shape_for(lo, hi):
    """The narrowest shape holding every integer in ``[lo, hi]``."""
    if lo < 0:
        return signed(max((-lo - 1).bit_length(), hi.bit_length()) + 1)
    return unsigned(max(hi.bit_length(), 1))


def check_elem_value(name, value, shape):
    """``value`` if it is an int representable in ``shape``; ``TypeError`` if not an int, else ``ValueError``."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, not {value!r}")
    lo, hi = range_of(shape)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be representable in {shape!r} ({lo}..{hi}), not {value!r}")
    return value

def popcount(bits, count):
    """The number of ones among the ``count`` bits of ``bits``, by a balanced adder tree.

    Every node of the tree is exactly as wide as its largest count (``bit_length``), so no
    adder carries a bit that can never be set.
    """
    terms = [(bits[k], 1) for k in range(count)]
    while len(terms) > 1:
        paired = []
        for j in range(0, len(terms), 2):
            if j + 1 < len(terms):
                (a, a_max), (b, b_max) = terms[j], terms[j + 1]
                paired.append(((a + b)[:(a_max + b_max).bit_length()], a_max + b_max))
            else:
                paired.append(terms[j])
        terms = paired
    return terms[0][0]
