"""An AXI4 slave memory for ``amaranth.sim`` testbenches, on a port of ``hwseg.hw.dram.memory_port_signature``.

``MemoryModel(port, data_bits=..., rng=...)`` answers like DRAM behind an interconnect, only slower and more
erratic on purpose: ``arready``/``awready``/``wready`` up with probability ``ready_prob`` in each cycle; each
read burst's data starts a random ``latency`` (min, max) cycles after its address was taken, then one beat in
each cycle a draw allows (``rvalid`` gaps), ``last`` on the last; write data follows the oldest accepted address;
each write's response comes a random latency after its last beat. Data is returned in request order (one
AXI ID). Adversarial on ordering, as AXI allows: a read returns memory as it stood when its address was
taken, and a write becomes visible only when its response is sent, so a read that does not wait for the
response of the write it depends on gets stale data. It checks every burst as it is taken (aligned, within ``[base, base + size)``, not across 4 KiB,
``last`` exactly on a burst's last beat) and keeps counts (``words_read``, ``words_written``, ``bursts``).
Add it with ``sim.add_testbench(model.serve, background=True)``.
"""

from collections import deque

__all__ = ["MemoryModel"]


class MemoryModel:
    def __init__(self, port, *, data_bits, rng, latency=(20, 200), ready_prob=0.7, outstanding=8, base=0,
                 size=None):
        self.port, self.data_bits, self.rng = port, data_bits, rng
        self.latency, self.ready_prob, self.outstanding = latency, ready_prob, outstanding
        self.word_bytes = data_bits // 8
        self.base, self.size = base, size
        self.words = {}                        # word index -> value
        self.words_read = self.words_written = 0
        self.bursts = {"read": 0, "write": 0}
        self.longest_burst = 0

    def _check(self, kind, address, beats):
        assert address % self.word_bytes == 0, f"{kind} burst at {address:#x} is not aligned to {self.word_bytes} bytes"
        end = address + beats * self.word_bytes
        assert address // 4096 == (end - 1) // 4096, f"{kind} burst {address:#x}+{beats} crosses a 4 KiB boundary"
        if self.size is not None:
            assert self.base <= address and end <= self.base + self.size, \
                f"{kind} burst {address:#x}+{beats} beats leaves the region {self.base:#x}+{self.size}"
        self.bursts[kind] += 1
        self.longest_burst = max(self.longest_burst, beats)

    def _due(self, cycle):
        return cycle + self.rng.randint(*self.latency)

    async def serve(self, ctx):
        port, rng, p = self.port, self.rng, self.ready_prob
        reads = deque()        # [due cycle, the burst's data, beats sent]
        writes = deque()       # [word index, beats left, data written] whose address was taken
        responses = deque()    # [due cycle, data written] of write responses
        r_beat = b_held = None
        cycle = 0
        while True:
            ctx.set(port.ar.ready, len(reads) < self.outstanding and rng.random() < p)
            ctx.set(port.aw.ready, len(writes) + len(responses) < self.outstanding and rng.random() < p)
            ctx.set(port.w.ready, bool(writes) and rng.random() < p)
            if r_beat is None and reads and reads[0][0] <= cycle and rng.random() < p:
                burst = reads[0]
                r_beat = (burst[1][burst[2]], burst[2] == len(burst[1]) - 1)
            ctx.set(port.r.valid, r_beat is not None)
            if r_beat is not None:
                ctx.set(port.r.payload.data, r_beat[0])
                ctx.set(port.r.payload.last, r_beat[1])
            if b_held is None and responses and responses[0][0] <= cycle and rng.random() < p:
                b_held = True
            ctx.set(port.b.valid, bool(b_held))
            ctx.set(port.b.payload, 0)
            (_, _, ar_valid, ar_ready, ar, aw_valid, aw_ready, aw, w_valid, w_ready, w, r_valid, r_ready,
             b_valid, b_ready) = await ctx.tick().sample(
                port.ar.valid, port.ar.ready, port.ar.payload, port.aw.valid, port.aw.ready, port.aw.payload,
                port.w.valid, port.w.ready, port.w.payload, port.r.valid, port.r.ready, port.b.valid, port.b.ready)
            if ar_valid and ar_ready:
                beats = int(ar.len) + 1
                self._check("read", int(ar.addr), beats)
                first = int(ar.addr) // self.word_bytes
                reads.append([self._due(cycle), [self.words.get(first + k, 0) for k in range(beats)], 0])
            if aw_valid and aw_ready:
                beats = int(aw.len) + 1
                self._check("write", int(aw.addr), beats)
                writes.append([int(aw.addr) // self.word_bytes, beats, {}])
            if w_valid and w_ready:
                burst = writes[0]
                assert bool(w.last) == (burst[1] == 1), \
                    f"write burst at word {burst[0]}: last={int(w.last)} with {burst[1]} beats left"
                burst[2][burst[0]] = int(w.data)
                self.words_written += 1
                burst[0] += 1
                burst[1] -= 1
                if burst[1] == 0:
                    writes.popleft()
                    responses.append([self._due(cycle), burst[2]])
            if r_valid and r_ready:
                burst = reads[0]
                self.words_read += 1
                burst[2] += 1
                if burst[2] == len(burst[1]):
                    reads.popleft()
                r_beat = None
            if b_valid and b_ready:
                self.words.update(responses.popleft()[1])
                b_held = None
            cycle += 1
