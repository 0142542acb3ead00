"""Weights loaded from DRAM: a WeightLoader fills several MacArrays' weight RAMs from the image, under random
memory latency and ready, while their inputs already come with random gaps and their outputs see backpressure;
every output against golden.conv2d."""

import random
import zlib

import numpy as np
import pytest
from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hwseg.golden import conv2d
from hwseg.hw.mac_array import MacArray
from hwseg.hw.weights import WeightLoader, WeightRam, weight_image
from tests.hw.memory_model import MemoryModel
from tests.hw.streams import collect, elem_range, send

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

BASE = 0x8000


def _golden(weights, bias, vectors):
    x = np.asarray(vectors, dtype=np.int64)[:, :, None, None]
    w = np.asarray(weights, dtype=np.int64)[:, :, None, None]
    return conv2d(x, w, np.asarray(bias, dtype=np.int64), 1, 0, 1)[:, :, 0, 0]


# (C_out, in_count, pe, simd, in_shape, weight bits, serial)
ARRAYS = [(6, 27, 1, 3, unsigned(8), 8, False), (4, 12, 2, 6, signed(8), 8, True), (8, 9, 4, 9, unsigned(4), 5, False),
          (3, 10, 1, 1, signed(6), 3, False)]


def _run(arrays, *, data_bits, burst, seed, valid_prob=0.6, ready_prob=0.6, latency=(20, 200), mem_ready=0.7,
         shared=False):
    """``shared``: arrays 0 and 1, 2 and 3, … each read one WeightRam (a lone last array one of its own)."""
    rng = np.random.default_rng(seed)
    top, duts, cases = Module(), [], []
    for k, (cout, count, pe, simd, in_shape, bits, serial) in enumerate(arrays):
        wmax = (1 << (bits - 1)) - 1
        weights = rng.integers(-wmax, wmax + 1, size=(cout, count))
        bias = rng.integers(-100, 101, size=cout)
        lo, hi = elem_range(in_shape)
        vectors = rng.integers(lo, hi + 1, size=(4, count))
        acc = _golden(weights, bias, vectors)
        dut = MacArray(in_shape=in_shape, in_count=count, weights=weights.tolist(), bias=bias.tolist(), pe=pe,
                       simd=simd, acc_shape=signed(24), serial=serial, weights_loaded=True, external_weights=shared)
        top.submodules[f"mac{k}"] = dut
        nf, sf = dut.fold
        beats = ([v[s * simd:(s + 1) * simd] for v in vectors.tolist() for _ in range(nf) for s in range(sf)]
                 if serial else vectors.tolist())
        expected = [acc[n, j * pe:(j + 1) * pe].tolist() for n in range(len(vectors)) for j in range(nf)]
        duts.append(dut)
        cases.append((beats, expected))
    stores = [(dut.weight_word_bits, len(dut.weight_words)) for dut in duts]
    top.submodules.loader = loader = WeightLoader(stores=stores, data_bits=data_bits, address_bits=24, burst=burst)
    for k, dut in enumerate(duts):
        if not shared:
            wiring.connect(top, getattr(loader, f"store{k}"), dut.load)
        elif k % 2 == 0:
            pair = duts[k:k + 2]
            top.submodules[f"ram{k}"] = ram = WeightRam(clients=[(d.weight_word_bits, len(d.weight_words))
                                                                 for d in pair])
            for j, d in enumerate(pair):
                wiring.connect(top, getattr(loader, f"store{k + j}"), getattr(ram, f"load{j}"))
                wiring.connect(top, d.weight_port, getattr(ram, f"port{j}"))
    image = weight_image([(dut.weight_word_bits, dut.weight_words) for dut in duts], data_bits=data_bits)
    assert len(image) == loader.image_bytes
    model = MemoryModel(loader.mem, data_bits=data_bits, rng=random.Random(seed), latency=latency,
                        ready_prob=mem_ready, base=BASE, size=len(image))
    word = data_bits // 8
    model.words.update({BASE // word + j: int.from_bytes(image[j * word:(j + 1) * word], "little")
                        for j in range(len(image) // word)})
    got = [[] for _ in duts]
    sim = Simulator(top)
    sim.add_clock(1e-8)

    async def setup(ctx):
        ctx.set(loader.base, BASE)
    sim.add_testbench(setup)
    sim.add_testbench(model.serve, background=True)
    for k, (dut, (beats, expected)) in enumerate(zip(duts, cases)):
        async def producer(ctx, dut=dut, beats=beats, rng=random.Random(seed + 2 * k)):
            await send(ctx, dut.i_stream, beats, rng=rng, valid_prob=valid_prob, timeout=5_000)

        async def consumer(ctx, dut=dut, count=len(expected), k=k, rng=random.Random(seed + 2 * k + 1)):
            await collect(ctx, dut.o_stream, count, got[k], rng=rng, ready_prob=ready_prob, timeout=5_000)
        sim.add_testbench(producer)
        sim.add_testbench(consumer)
    sim.run()
    for k, (_, expected) in enumerate(cases):
        nf = arrays[k][0] // arrays[k][2]
        for index, (e, g) in enumerate(zip(expected, got[k])):
            for lane, (ev, gv) in enumerate(zip(e, g)):
                assert ev == gv, (f"array {k}, vector {index // nf} beat {index % nf} channel "
                                  f"{(index % nf) * arrays[k][2] + lane}: expected {ev}, got {gv}")
    return model, loader


@pytest.mark.parametrize("data_bits,burst", [(32, 4), (64, 16), (128, 2)])
def test_loaded_weights_match_golden(data_bits, burst):
    model, loader = _run(ARRAYS, data_bits=data_bits, burst=burst, seed=zlib.crc32(f"{data_bits}/{burst}".encode()))
    assert model.words_read == loader.image_words and model.words_written == 0


@pytest.mark.parametrize("data_bits,burst,count", [(64, 8, 4), (128, 4, 3)])
def test_two_arrays_share_a_weight_ram(data_bits, burst, count):
    """Pairs of MAC arrays read one WeightRam each (the two ports of an UltraRAM), loaded under random memory
    latency while their inputs come with gaps and their outputs see backpressure; a lone last one its own."""
    model, loader = _run(ARRAYS[:count], data_bits=data_bits, burst=burst, seed=count, shared=True)
    assert model.words_read == loader.image_words


def test_weight_ram_parameters():
    with pytest.raises(ValueError, match=r"clients must list one or two \(word_bits, depth\), not \[\]"):
        WeightRam(clients=[])
    with pytest.raises(ValueError, match=r"clients\[1\] must be \(word_bits, depth\) of positive ints, not \(8, 0\)"):
        WeightRam(clients=[(8, 4), (8, 0)])
    with pytest.raises(ValueError, match="ram_style must be None, 'block' or 'ultra', not 'huge'"):
        WeightRam(clients=[(8, 4)], ram_style="huge")
    options = dict(in_shape=unsigned(8), in_count=4, weights=[[1, 2, 3, 4]], bias=None, pe=1, simd=2,
                   acc_shape=signed(16))
    with pytest.raises(ValueError, match="external_weights applies to loaded weights"):
        MacArray(**options, external_weights=True)
    with pytest.raises(ValueError, match="external_weights applies to loaded weights"):
        MacArray(**options, weights_loaded=True, weight_ram_style="ultra", external_weights=True)


def test_fast_memory_full_rate():
    model, loader = _run(ARRAYS[:2], data_bits=64, burst=8, seed=5, valid_prob=1.0, ready_prob=1.0, latency=(1, 1),
                         mem_ready=1.0)
    assert model.words_read == loader.image_words


def test_image_layout():
    # two stores: 12-bit words (one 32-bit word each), 40-bit words (two each, low first, zero-padded)
    image = weight_image([(12, [0xABC, 0x001]), (40, [0x12_3456_789A])], data_bits=32)
    assert image == bytes.fromhex("bc0a0000" "01000000" "9a785634" "12000000")
    with pytest.raises(ValueError, match="a weight word must be an unsigned 12-bit int, not 4096"):
        weight_image([(12, [4096])], data_bits=32)


@pytest.mark.parametrize("kwargs,match", [
    (dict(stores=[]), r"stores must be a non-empty list of \(word_bits, depth\), not \[\]"),
    (dict(stores=[(8, 0)]), r"stores\[0\] must be \(word_bits, depth\) of positive ints, not \(8, 0\)"),
    (dict(data_bits=48), "data_bits must be a power of two from 32 to 1024, not 48"),
    (dict(address_bits=12, stores=[(64, 1024)]), "does not fit 12-bit addresses"),
])
def test_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WeightLoader(**(dict(stores=[(8, 4)], data_bits=32, address_bits=24, burst=4) | kwargs))


def test_mac_array_loaded_parameters():
    options = dict(in_shape=unsigned(8), in_count=4, weights=[[1, 2, 3, 4]], bias=None, pe=1, simd=2,
                   acc_shape=signed(16))
    with pytest.raises(ValueError, match="weight_ram_style must be None, 'block' or 'ultra', not 'huge'"):
        MacArray(**options, weights_loaded=True, weight_ram_style="huge")
    with pytest.raises(ValueError, match="weight_ram_style applies to loaded weights"):
        MacArray(**options, weight_ram_style="ultra")
    # 4-bit weights, two 8-bit folds: packed into one word, fold 0 in the low bits
    dut = MacArray(**options, weights_loaded=True, weight_ram_style="ultra")
    assert (dut.folds_per_word, dut.weight_word_bits, dut.weight_words) == (2, 16, [0x4321])
    assert MacArray(**options).folds_per_word == 1


def test_packing_reaches_an_ultraram_word():
    def packing(cout, count, pe, simd):
        dut = MacArray(in_shape=unsigned(8), in_count=count, weights=[[100] * count] * cout, bias=None, pe=pe,
                       simd=simd, acc_shape=signed(32), weights_loaded=True)
        return dut.folds_per_word, dut.weight_word_bits, len(dut.weight_words)
    assert packing(64, 192, 1, 1) == (8, 64, 1536)       # 8-bit folds: 8 to a word
    assert packing(64, 192, 1, 3) == (2, 48, 2048)       # 24-bit folds: 2 (4 would be 96 bits)
    assert packing(64, 192, 2, 8) == (1, 128, 768)       # wider than a word: one fold each
    assert packing(2, 3, 1, 1) == (8, 64, 1)             # 6 folds: one word of 8 slots
