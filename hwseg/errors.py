"""User-facing errors: each message is one line that names the problem and the fix.

The command line prints ``error: <message>`` for any :class:`HwsegError` and exits non-zero
without a traceback; everything else is a bug and keeps its traceback.
"""

__all__ = ["HwsegError", "CheckpointError", "UnsupportedError", "InputSizeError", "BoardError",
           "DoesNotFitError", "FoldingError", "SimulationError", "DatasetError", "SynthesisError", "OffchipError"]


class HwsegError(Exception):
    """Base of all errors caused by the user's input rather than by a bug in hwseg."""


class CheckpointError(HwsegError):
    """The model file is missing, unreadable, unsafe or not an hwseg checkpoint."""


class UnsupportedError(HwsegError):
    """The model holds a layer or a configuration hwseg cannot lower (named in the message)."""


class InputSizeError(HwsegError):
    """The network cannot take the requested input size."""


class BoardError(HwsegError):
    """Unknown board, or a board file that is malformed."""


class DoesNotFitError(HwsegError):
    """The design exceeds the board's resources."""


class OffchipError(HwsegError):
    """Buffers asked to go to DRAM on a board without DRAM for activations, or an unknown placement mode."""


class FoldingError(HwsegError):
    """A manual folding that names an unknown layer or an illegal PE/SIMD, or an unreadable folding file."""


class SimulationError(HwsegError):
    """The simulator is missing or the simulation could not run."""


class DatasetError(HwsegError):
    """A dataset that is missing, malformed or does not match the network (size, classes)."""


class SynthesisError(HwsegError):
    """Yosys or nextpnr failed, or the synthesized design does not fit the part."""
