"""A stand-in for the ``pynq`` package, enough for the generated driver (``hwseg_driver``) to run unchanged against the
emitted Verilog: ``allocate`` gives numpy buffers, ``Overlay(bitfile)`` checks the file as PYNQ does and offers
``axi_dma_0``, an AXI DMA whose MM2S channel feeds the DMA wrapper (``{name}_dma``, the accelerator with DMA-wide
streams) in the generated Verilator harness and whose S2MM channel fills each buffer it is given with one output
frame — ended by tlast, as a real S2MM transfer is, or the stand-in fails.

``attach(design, ...)`` says which design the next overlays simulate; ``hang=True`` makes the accelerator
silent (the S2MM channel never finishes), as a wrong bitstream would.

A design with buffers in DRAM: ``allocate`` gives each buffer a physical address (page-aligned, never 0), the overlay
offers ``control_gpio`` (an AXI GPIO whose register writes are kept, channel 2 at its power-up value: reset held),
and the harness runs the wrapper with the GPIO's channels on its control ports and a memory model holding, at the
base the driver wrote, what the driver put in that buffer (its weight image). An accelerator still held in reset
never answers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from hwseg.cosim.native import run_harness
from hwseg.cosim.network import watchdog_limit
from hwseg.deploy import CONTROL_RESET_BIT, design_wrapper, dma_ports

_ATTACHED: dict = {}


#: where the stand-in's physical addresses start (not 0, so that a missing base shows; above 4 GiB where the design
#: takes 40-bit addresses, so that the base's high bits matter)
FIRST_ADDRESS, FIRST_ADDRESS_40 = 0x3000_0000, 0x8_3000_0000
_BUFFERS: dict[int, "PynqBuffer"] = {}      # physical address → buffer


def attach(design, *, valid_prob=0.7, ready_prob=0.7, seed=1, hang=False, work_dir=None):
    _ATTACHED.clear()
    _ATTACHED.update(design=design, valid_prob=valid_prob, ready_prob=ready_prob, seed=seed, hang=hang,
                     work_dir=work_dir, runs=[], gpio=None)
    _BUFFERS.clear()


class PynqBuffer(np.ndarray):
    """A contiguous buffer; ``flush``/``invalidate`` are the cache operations (nothing to do here)."""

    def flush(self):
        pass

    def invalidate(self):
        pass

    def freebuffer(self):
        pass


def allocate(shape, dtype=np.uint32, **kwargs):
    buffer = np.zeros(shape, dtype=dtype).view(PynqBuffer)
    dram = _ATTACHED["design"].manifest.get("dram") if _ATTACHED else None
    first = FIRST_ADDRESS_40 if dram and dram["address_bits"] > 32 else FIRST_ADDRESS
    address = max((a + b.nbytes for a, b in _BUFFERS.items()), default=first)
    buffer.physical_address = -(-address // 4096) * 4096
    _BUFFERS[buffer.physical_address] = buffer
    return buffer


class _Gpio:
    """An AXI GPIO, two output channels (GPIO_DATA at 0x0, GPIO2_DATA at 0x8), channel 2's power-up value given."""

    def __init__(self, channel2_default: int):
        self.registers = {0x0: 0, 0x8: channel2_default}
        self.writes: list[tuple[int, int]] = []

    def write(self, offset, value):
        if offset not in self.registers:
            raise AssertionError(f"write to GPIO register {offset:#x}, not a data register")
        self.registers[offset] = int(value) & 0xFFFFFFFF
        self.writes.append((offset, int(value)))


class _Simulation:
    """The accelerator behind the DMA: what MM2S sent, run through the Verilog when S2MM waits for it."""

    def __init__(self):
        self.design = _ATTACHED["design"]
        self.sent: list[np.ndarray] = []      # beats not yet simulated
        self.frames: list[np.ndarray] = []    # output frames not yet handed to S2MM

    def run(self):
        if not self.sent or _ATTACHED["hang"]:
            return
        design, manifest = self.design, self.design.manifest
        stimulus = np.concatenate(self.sent)
        self.sent.clear()
        in_beats, out_beats = manifest["input"]["beats_per_frame"], manifest["output"]["beats_per_frame"]
        if len(stimulus) % in_beats:
            raise AssertionError(f"MM2S sent {len(stimulus)} beats, not whole frames of {in_beats}")
        frames = len(stimulus) // in_beats
        ports = dma_ports(design)
        out_bytes = next(p["width"] for p in ports if p["name"] == "m_axis_tdata") // 8
        verilog = design.verilog + design_wrapper(design)
        work = Path(_ATTACHED["work_dir"] or tempfile.mkdtemp(prefix="hwseg-dma-"))
        memory, constants = None, None
        if "dram" in manifest:
            if _ATTACHED["gpio"].registers[0x8] >> CONTROL_RESET_BIT:
                return                       # held in reset: nothing comes out
            memory, constants = self._memory()
        result = run_harness(verilog, ports, f"{design.name}_dma", stimulus, in_beats_per_frame=in_beats,
                             out_beats_per_frame=out_beats, out_beats=frames * out_beats, out_bytes=out_bytes,
                             valid_prob=_ATTACHED["valid_prob"], ready_prob=_ATTACHED["ready_prob"],
                             seed=_ATTACHED["seed"], silence_limit=4 * watchdog_limit(design, 0.7, 0.7),
                             work_dir=work / f"run{len(_ATTACHED['runs'])}", memory=memory, constants=constants)
        _ATTACHED["runs"].append(result)
        if result.status != "ok":
            raise AssertionError(f"the simulation {result.status} (log: {result.log})")
        got = np.asarray(result.got, dtype=np.uint8).reshape(frames, out_beats, out_bytes)
        last = np.asarray(result.last).astype(bool).reshape(frames, out_beats)
        if not (last[:, -1].all() and not last[:, :-1].any()):
            raise AssertionError("tlast does not end each output frame exactly: S2MM transfers would split wrongly")
        self.frames.extend(got)


    def _memory(self) -> tuple[dict, dict]:
        """The memory model (the buffer at the base the driver wrote, as the driver filled it) and the GPIO's
        channels on the wrapper's control ports."""
        gpio = _ATTACHED["gpio"]
        low, high = gpio.registers[0x0], gpio.registers[0x8]
        base = low | ((high & 0xFF) << 32)
        dram = self.design.manifest["dram"]
        region = _BUFFERS.get(base)
        if region is None or region.nbytes < dram["region_bytes"]:
            raise AssertionError(f"the control GPIO's base {base:#x} is not a buffer of {dram['region_bytes']} bytes")
        memory = {"bytes": dram["region_bytes"], "base": base, "latency": (20, 200), "ready": 0.9,
                  "init": [(0, region.tobytes()[:dram["region_bytes"]])]}
        return memory, {"ctrl_base_low": low, "ctrl_base_high": high}


class _Channel:
    def __init__(self, simulation: _Simulation, direction: str):
        self._simulation, self._direction = simulation, direction
        self._pending: list[np.ndarray] = []
        self.error = False

    def transfer(self, array, start=0, nbytes=0):
        if not isinstance(array, PynqBuffer):
            raise AssertionError("a DMA transfer needs a buffer from allocate()")
        if not array.flags["C_CONTIGUOUS"]:
            raise AssertionError("a DMA buffer must be contiguous")
        if self._direction == "send":
            self._simulation.sent.append(np.array(array, dtype=np.uint8).reshape(-1, array.shape[-1]))
        else:
            if self._pending:
                raise AssertionError("S2MM transfer started while the last one is still running")
            self._pending.append(array)

    @property
    def idle(self):
        if self._direction == "send":
            self._simulation.run()       # what is sent is taken when the accelerator runs
            return not self._simulation.sent
        if self._pending:
            if not self._simulation.frames:
                self._simulation.run()
            if self._simulation.frames:
                frame = self._simulation.frames.pop(0)
                buffer = self._pending.pop()
                if buffer.shape != frame.shape:
                    raise AssertionError(f"S2MM buffer {buffer.shape} for a frame of {frame.shape} beats × bytes")
                buffer[...] = frame
        return not self._pending


class _Dma:
    def __init__(self):
        simulation = _Simulation()
        self.sendchannel, self.recvchannel = _Channel(simulation, "send"), _Channel(simulation, "receive")


class Overlay:
    def __init__(self, bitfile_name, download=True, **kwargs):
        path = Path(bitfile_name)
        if not path.is_file():                      # as PYNQ: the bitstream must exist
            raise OSError(f"{bitfile_name} does not exist")
        if not path.with_suffix(".hwh").is_file():  # PYNQ reads the design's IP from the .hwh beside it
            raise OSError(f"{path.with_suffix('.hwh')} does not exist")
        self.bitfile_name = str(path)
        self.axi_dma_0 = _Dma()
        if "dram" in _ATTACHED["design"].manifest:
            self.control_gpio = _ATTACHED["gpio"] = _Gpio(1 << CONTROL_RESET_BIT)
