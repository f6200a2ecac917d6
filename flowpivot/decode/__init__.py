"""Pure decoders of flow export datagrams: NetFlow v5, NetFlow v9 (RFC 3954), IPFIX (RFC 7011).

Bytes in, Arrow record batches of :data:`flowpivot.schema.STORE_SCHEMA` out; no sockets, no files.
One :class:`FlowDecoder` keeps the state an export stream needs (templates, sampling rates,
sequence numbers, data held for a template that has not arrived yet), scoped per exporter,
observation domain and template id.

A batch of datagrams is decoded in two passes. The first walks the headers and sets in Python
(a few struct reads per set), learns templates and options, and files each data set under its
template. The second reads each template's records of the whole batch with one
``np.frombuffer`` and turns them into columns, so no Python code runs per flow record.
"""

from __future__ import annotations

import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from ..errors import Problem
from ..timerange import TimeRange, check_times
from .records import Context, build_batch, sampling_rates
from .templates import RecordError, Template, compile_template

__all__ = ["FlowDecoder", "DecodeResult", "ExporterStats"]

_H = struct.Struct(">H")
_HH = struct.Struct(">HH")
_HHH = struct.Struct(">HHH")
_I = struct.Struct(">I")
_V5 = struct.Struct(
    ">HHIIIIBBH"
)  # version count sysuptime unix_secs unix_nsecs sequence engine_type engine_id sampling
_V9 = struct.Struct(">HHIIII")  # version count sysuptime unix_secs sequence source_id
_IPFIX = struct.Struct(">HHIII")  # version length export_time sequence domain
_IPFIX_SET = struct.Struct(">HHIIIHH")  # the IPFIX header and the first set header
_V9_SET = struct.Struct(">HHIIIIHH")

MAX_TEMPLATES = 100_000
Buf = bytes | memoryview  # datagrams are read in place: memoryviews of a mapped capture need no copy
#: (data, exporter, received ms) or (data, exporter, received ms, UDP source port)
Datagram = tuple[Buf, str, int] | tuple[Buf, str, int, int]
MAX_PROBLEMS = 10_000

# NetFlow v5 flow record (48 bytes), declared as IPFIX elements so it compiles like any template.
_V5_FIELDS = [
    (0, 8, 4), (0, 12, 4), (0, 15, 4), (0, 10, 2), (0, 14, 2), (0, 2, 4), (0, 1, 4), (0, 22, 4), (0, 21, 4),
    (0, 7, 2), (0, 11, 2), (0, 210, 1), (0, 6, 1), (0, 4, 1), (0, 5, 1), (0, 16, 2), (0, 17, 2),
    (0, 9, 1), (0, 13, 1), (0, 210, 2),
]  # fmt: skip
V5_TEMPLATE = compile_template(5, 0, _V5_FIELDS)
assert V5_TEMPLATE.record_length == 48
# NetFlow v7 (Catalyst switches, fprobe): the v5 record, flags in place of v5's pad and engine
# bytes, then the router shortcut address; 52 bytes. The header's last 4 bytes are reserved.
V7_TEMPLATE = compile_template(7, 0, _V5_FIELDS + [(0, 43, 4)])
assert V7_TEMPLATE.record_length == 52


@dataclass
class ExporterStats:
    """Counters of one exporter (the exporter string given to decode)."""

    datagrams: int = 0
    flows: int = 0
    malformed: int = 0
    lost_seq: int = 0  # flows lost to sequence gaps (v9: estimated from lost packets x flows per packet)
    lost_seq_packets: int = 0  # v9 only: export packets lost to sequence gaps
    pending: int = 0  # data sets held now, waiting for their template
    pending_lost: int = 0  # data sets dropped because their template never came (or too many held)
    unsupported: int = 0  # datagrams of other protocols (sFlow, NetFlow v1/v6/v8)
    other_records: int = 0  # data records of templates without addresses (NAT events, packet samples)
    bad_time: int = 0  # records left out for a time outside the plausible range (also in malformed)
    end_before_start_repaired: int = 0  # records kept with their end set to their start

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class DecodeResult:
    batch: pa.RecordBatch | None  # STORE_SCHEMA, None when nothing was decoded
    problems: list[Problem] = field(default_factory=list)

    @property
    def flows(self) -> int:
        return 0 if self.batch is None else self.batch.num_rows


@dataclass
class _Held:
    body: Buf
    export_ms: int
    uptime_ms: int
    received_ms: int
    where: str


class _Stream:
    """State of one export stream: an exporter's version and observation domain (RFC 7011 section 3.1)."""

    __slots__ = ("templates", "next_seq", "last_seq", "inclusive", "records", "datagrams")

    def __init__(self) -> None:
        self.templates: dict[int, Template] = {}
        self.next_seq: int | None = None
        self.last_seq: int | None = None  # the previous datagram's sequence number
        # v5/v7/IPFIX numbering: False, records sent before this datagram (RFC 7011); True,
        # records sent including this datagram's (softflowd); None, not told apart yet
        self.inclusive: bool | None = None
        self.records = 0  # data records and datagrams seen: v9 flows per sequence number
        self.datagrams = 0


class _Group:
    """Data sets of one template (and exporter, domain) waiting to be read together."""

    __slots__ = ("template", "exporter", "port", "domain", "sets", "blocks")

    def __init__(self, template: Template, exporter: str, domain: int, port: int = 0) -> None:
        self.template = template
        self.exporter = exporter
        self.port = port  # the exporter's UDP source port: part of the transport session
        self.domain = domain
        # one (body, record count, export ms, sysUpTime ms, v5 sampling, received ms, where) per
        # data set; where: the datagram's index in the batch, or a label (held data)
        self.sets: list[tuple[bytes | memoryview, int, int, int, int, int, int | str]] = []
        # the same, as arrays, for a run of datagrams filed at once by decode_buffer
        self.blocks: list[
            tuple[list[memoryview], np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
        ] = []


class FlowDecoder:
    """Decodes NetFlow v5/v9 and IPFIX datagrams of any number of exporters into STORE_SCHEMA batches.

    ``pending_timeout_ms`` and ``max_pending`` bound the data sets held while their template is
    missing; what exceeds them is dropped and counted as ``pending_lost``.

    ``time_range`` (e.g. ``TimeRange()``: 1970 to the datagram's arrival plus a day) is the
    plausible range of flow times: a record outside it is left out and reported with its datagram,
    and a record that ends before it starts gets its end set to its start
    (:func:`flowpivot.timerange.check_times`). None (the default) leaves the check to the caller;
    :meth:`decode_buffer` takes a range of its own for one call (``read_pcap`` passes one).

    Templates, options (sampling, system init time) and sequence numbers are scoped per transport
    session (RFC 7011 section 3.1): exporter address, UDP source port, observation domain.
    """

    def __init__(
        self, *, pending_timeout_ms: int = 60_000, max_pending: int = 10_000,
        time_range: TimeRange | None = None,
    ) -> None:  # fmt: skip
        self.pending_timeout_ms = pending_timeout_ms
        self.max_pending = max_pending
        self.time_range = time_range
        self.stats: dict[str, ExporterStats] = {}
        # (exporter, source port, version, domain) -> stream
        self._streams: dict[tuple[str, int, int, int], _Stream] = {}
        self._n_templates = 0
        self._template_epoch = 0  # changes whenever a template is added, replaced or withdrawn
        # (exporter, source port, version, domain, template id) -> data sets held for that template
        self._pending: OrderedDict[tuple[str, int, int, int, int], list[_Held]] = OrderedDict()
        self._pending_count = 0
        # (exporter, source port, version, domain) -> {("s", sampler id) | ("t", template id) | None: rate}
        self._sampling: dict[tuple[str, int, int, int], dict[object, int]] = {}
        self._system_init: dict[tuple[str, int, int], int] = {}  # (exporter, source port, domain) -> ms
        self._port = 0  # UDP source port of the datagram being walked
        self._reference_ms: int | None = None  # decode_buffer: the input's own time, for the time check
        self._range: TimeRange | None = time_range  # the range of the call under way
        self._src_ports: list[int] = []  # decode_buffer: source port of each exporter index
        # per-batch state
        self._groups: dict[object, _Group] = {}
        self._batches: list[pa.RecordBatch] = []
        self._problems: list[Problem] = []
        self._cur: tuple[int, Callable[[int], str] | None, int] = (0, None, 0)
        self._run_keys = np.zeros((0, 4), dtype=np.int64)
        self._run_inv = np.zeros(0, dtype=np.int64)
        self._run_nf = np.zeros(0, dtype=np.int64)
        self._run_templates: list[Template | None] = []

    # ----- public API --------------------------------------------------------------------------

    def decode(self, data: bytes, exporter: str, received_ms: int, source_port: int = 0) -> DecodeResult:
        return self.decode_many([(data, exporter, received_ms, source_port)])

    def decode_many(self, datagrams: Sequence[Datagram], where: Callable[[int], str] | None = None) -> DecodeResult:
        """Decode a batch of ``(data, exporter, received_ms)`` or ``(data, exporter, received_ms,
        source_port)`` datagrams into one record batch (a 3-tuple means source port 0).

        ``where(i)`` (optional) names datagram ``i`` of the batch in problems, e.g. its packet
        number and file offset; by default it is "datagram N" counted per exporter.
        """
        batches, problems = self.decode_batches(datagrams, where)
        if not batches:
            return DecodeResult(None, problems)
        return DecodeResult(batches[0] if len(batches) == 1 else pa.concat_batches(batches), problems)

    def decode_batches(
        self, datagrams: Sequence[Datagram], where: Callable[[int], str] | None = None
    ) -> tuple[list[pa.RecordBatch], list[Problem]]:
        """As :meth:`decode_many`, but one record batch per template, saving the copy into one batch."""
        self._groups.clear()
        self._batches = []
        self._problems = []
        stats = self.stats
        walkers = {5: self._walk_v5, 7: self._walk_v7, 9: self._walk_v9, 10: self._walk_ipfix}
        for i, item in enumerate(datagrams):
            data, exporter, received_ms = item[0], item[1], item[2]
            self._port = item[3] if len(item) > 3 else 0  # type: ignore[misc]
            st = stats.get(exporter)
            if st is None:
                st = stats[exporter] = ExporterStats()
            st.datagrams += 1
            self._cur = (i, where, st.datagrams)
            if not isinstance(data, (bytes, memoryview)):
                data = bytes(data)  # memoryviews (e.g. of a mapped capture) are read without a copy
            walk = walkers.get(data[1]) if len(data) >= 4 and data[0] == 0 else None
            try:
                if walk is not None and data[1] > 7 and self._one_data_set(data, exporter, received_ms, st):
                    continue
                if walk is not None:
                    walk(data, exporter, received_ms, st)
                else:
                    self._walk_other(data, exporter, st)
            except Exception as e:  # a decoder bug must not lose the batch; report it as bad input
                self._bad(st, exporter, 0, f"undecodable datagram ({type(e).__name__}: {e})")
        self._flush()
        batches, self._batches = self._batches, []
        problems, self._problems = self._problems, []
        return batches, problems

    def decode_buffer(
        self, buf: bytes | memoryview | np.ndarray, starts: np.ndarray, ends: np.ndarray, exporter_index: np.ndarray,
        exporters: list[str], received_ms: list[int], where: Callable[[int], str] | None = None,
        source_ports: np.ndarray | None = None, reference_ms: int | None = None, time_range: TimeRange | None = None,
    ) -> tuple[list[pa.RecordBatch], list[Problem]]:  # fmt: skip
        """Decode datagrams that lie in one buffer (e.g. a mapped capture): datagram ``i`` is
        ``buf[starts[i]:ends[i]]`` from ``exporters[exporter_index[i]]``, UDP source port
        ``source_ports[i]`` (None: all 0). ``reference_ms`` is the input's own time (a file's
        modification time) for the plausible time range; None: each datagram's arrival.
        ``time_range``: the plausible range for this call (None: the decoder's ``time_range``).

        Same result as :meth:`decode_batches`, faster: the headers of the usual datagrams (v5, and
        v9/IPFIX with one data set of a known fixed-length flow template) are read with NumPy for
        the whole batch; the others (templates, options, several sets, anything odd) take the
        per-datagram walk, in their place in the sequence.
        """
        self._groups.clear()
        self._batches = []
        self._problems = []
        self._reference_ms = reference_ms
        self._range = self.time_range if time_range is None else time_range
        try:
            return self._decode_buffer(buf, starts, ends, exporter_index, exporters, received_ms, where, source_ports)
        finally:
            self._reference_ms = None
            self._range = self.time_range

    def _decode_buffer(
        self, buf: bytes | memoryview | np.ndarray, starts: np.ndarray, ends: np.ndarray, exporter_index: np.ndarray,
        exporters: list[str], received_ms: list[int], where: Callable[[int], str] | None,
        source_ports: np.ndarray | None,
    ) -> tuple[list[pa.RecordBatch], list[Problem]]:  # fmt: skip
        u8 = np.frombuffer(buf, dtype=np.uint8)
        if len(u8) < 24:  # header reads of short datagrams are masked, but must stay inside the buffer
            u8 = np.concatenate([u8, np.zeros(24, dtype=np.uint8)])
        mv = u8.data
        starts = np.asarray(starts, dtype=np.int64)
        ends = np.asarray(ends, dtype=np.int64)
        exporter_index = np.asarray(exporter_index, dtype=np.int64)
        n = len(starts)
        for name in exporters:
            if name not in self.stats:
                self.stats[name] = ExporterStats()
        # one index per transport session source (address, port): the fast path keys on it
        if source_ports is not None and n:
            pair = exporter_index * 65536 + np.asarray(source_ports, dtype=np.int64)
            uniq_pairs, inv_pairs = np.unique(pair, return_inverse=True)
            exporters = [exporters[k >> 16] for k in uniq_pairs.tolist()]
            self._src_ports = [k & 0xFFFF for k in uniq_pairs.tolist()]
            exporter_index = inv_pairs.reshape(-1)
        else:
            self._src_ports = [0] * len(exporters)
        lens = ends - starts
        usable = lens >= 24
        s = np.where(usable, starts, 0)  # header reads of short datagrams are masked out below

        def be(off: int, width: int) -> np.ndarray:
            out = np.zeros(n, dtype=np.int64)
            for k in range(width):
                out = (out << 8) | u8[s + off + k]
            return out

        version = np.where(usable & (u8[s] == 0), u8[s + 1], 0)
        hdr = np.where(version == 10, 16, 20)
        set_id = np.where(version == 10, be(16, 2), be(20, 2))
        set_len = np.where(version == 10, be(18, 2), be(22, 2))
        domain = np.where(version == 10, be(12, 4), be(16, 4))
        seq = np.where(version == 10, be(8, 4), np.where(version == 5, be(16, 4), be(12, 4)))
        export_ms = np.where(version == 10, be(4, 4), be(8, 4)) * 1000
        v5_count = be(2, 2)
        one_set = ((version == 10) & (be(2, 2) == lens) & (set_len == lens - 16)) | (
            (version == 9) & (set_len == lens - 20)
        )
        candidate = (one_set & (set_id >= 256)) | ((version == 5) & (v5_count > 0) & (24 + 48 * v5_count <= lens))

        done, epoch = 0, -1
        simple = candidate
        while done < n:
            if epoch != self._template_epoch:  # templates changed: which datagrams are simple, again
                epoch = self._template_epoch
                simple = self._resolve(candidate, version, exporter_index, exporters, domain, set_id, done)
            run_end = done + int(np.argmin(simple[done:])) if not simple[done:].all() else n
            if run_end > done:
                self._file_run(slice(done, run_end), u8, mv, starts, lens, exporter_index, exporters, version, hdr,
                               set_len, domain, seq, export_ms, v5_count, received_ms)  # fmt: skip
            if run_end < n:  # the odd datagram, walked in its place
                i = run_end
                name = exporters[exporter_index[i]]
                st = self.stats[name]
                st.datagrams += 1
                self._cur = (i, where, st.datagrams)
                self._port = self._src_ports[exporter_index[i]]
                self._walk_one(mv[starts[i] : ends[i]], name, received_ms[i], st)
            done = run_end + 1
        self._flush()
        batches, self._batches = self._batches, []
        problems, self._problems = self._problems, []
        return batches, problems

    def _resolve(
        self, candidate: np.ndarray, version: np.ndarray, exporter_index: np.ndarray, exporters: list[str],
        domain: np.ndarray, set_id: np.ndarray, start: int,
    ) -> np.ndarray:  # fmt: skip
        """Which datagrams from ``start`` on are simple now: v5, or one data set of a known fixed flow template."""
        simple = candidate.copy()
        simple[:start] = False
        if self._system_init:
            simple &= version != 10  # IPFIX uptimes then depend on per-domain state: the walk handles them
        nf = np.flatnonzero(simple & (version != 5))
        if len(nf):
            keys = np.stack([exporter_index[nf], version[nf], domain[nf], set_id[nf]], axis=1)
            if len(exporters) < 1 << 13:  # pack the key in one integer: sorting rows is much slower
                packed = (exporter_index[nf] << 50) | ((version[nf] - 9) << 48) | (domain[nf] << 16) | set_id[nf]
                _, first, inv = np.unique(packed, return_index=True, return_inverse=True)
                uniq = keys[first]
            else:
                uniq, inv = np.unique(keys, axis=0, return_inverse=True)
            ok = np.zeros(len(uniq), dtype=bool)
            self._run_templates = []
            for k, (e, v, d, sid) in enumerate(uniq.tolist()):
                stream = self._streams.get((exporters[e], self._src_ports[e], v, d))
                t = stream.templates.get(sid) if stream is not None else None
                ok[k] = t is not None and t.plain
                self._run_templates.append(t)
            self._run_keys, self._run_inv, self._run_nf = uniq, inv.reshape(-1), nf
            simple[nf] = ok[inv.reshape(-1)]
        else:
            self._run_keys, self._run_inv, self._run_nf = (
                np.zeros((0, 4), dtype=np.int64),
                np.zeros(0, dtype=np.int64),
                nf,
            )
            self._run_templates = []
        return simple

    def _file_run(
        self, run: slice, u8: np.ndarray, mv: memoryview, starts: np.ndarray, lens: np.ndarray,
        exporter_index: np.ndarray, exporters: list[str], version: np.ndarray, hdr: np.ndarray, set_len: np.ndarray,
        domain: np.ndarray, seq: np.ndarray, export_ms: np.ndarray, v5_count: np.ndarray, received_ms: list[int],
    ) -> None:  # fmt: skip
        """File the data of a run of simple datagrams under their templates, and check their sequence numbers."""
        idx = np.arange(run.start, run.stop)
        recv = np.asarray(received_ms[run.start : run.stop], dtype=np.int64)
        for e, c in zip(*np.unique(exporter_index[idx], return_counts=True), strict=True):
            self.stats[exporters[e]].datagrams += int(c)
        # v5: one group per (exporter, engine id); the header fields are gathered for the whole run
        i5 = idx[version[idx] == 5]
        if len(i5):
            s5 = starts[i5]
            count = v5_count[i5]
            uptime = (
                (u8[s5 + 4].astype(np.int64) << 24)
                | (u8[s5 + 5].astype(np.int64) << 16)
                | (u8[s5 + 6].astype(np.int64) << 8)
                | u8[s5 + 7]
            )
            nsecs = (
                (u8[s5 + 12].astype(np.int64) << 24)
                | (u8[s5 + 13].astype(np.int64) << 16)
                | (u8[s5 + 14].astype(np.int64) << 8)
                | u8[s5 + 15]
            )
            engine = (u8[s5 + 20].astype(np.int64) << 8) | u8[s5 + 21]
            sampling = ((u8[s5 + 22].astype(np.int64) << 8) | u8[s5 + 23]) & 0x3FFF
            ems = export_ms[i5] + nsecs // 1_000_000  # v5's export time has nanoseconds
            keys = exporter_index[i5] * 65536 + engine
            for key in np.unique(keys).tolist():
                sel = keys == key
                name, port = exporters[key // 65536], self._src_ports[key // 65536]
                engine_id = key & 0xFF
                g = self._group(V5_TEMPLATE, name, engine_id, port)
                a = (s5[sel] + 24).tolist()
                c = count[sel]
                b = (s5[sel] + 24 + 48 * c).tolist()
                g.blocks.append((list(map(mv.__getitem__, map(slice, a, b))), c, ems[sel], uptime[sel], sampling[sel],
                                 recv[i5[sel] - run.start], i5[sel]))  # fmt: skip
                self._seq_run(self._stream(name, 5, key & 0xFFFF, port), seq[i5][sel], c, 5, self.stats[name])
        # v9 / IPFIX: data filed per template; sequence numbers checked per stream, in datagram order
        in_run = (self._run_nf >= run.start) & (self._run_nf < run.stop)
        nf, inv = self._run_nf[in_run], self._run_inv[in_run]
        if not len(nf):
            return
        reclen = np.array([t.record_length if t is not None else 1 for t in self._run_templates], dtype=np.int64)
        count = (set_len[nf] - 4) // reclen[inv]
        for k in np.unique(inv).tolist():
            mine = inv == k
            sel = nf[mine]
            t = self._run_templates[k]
            assert t is not None
            e, v, d, _ = self._run_keys[k].tolist()
            c = count[mine]
            a = starts[sel] + hdr[sel] + 4
            b = a + c * t.record_length
            if v == 10:
                uptime = np.full(len(sel), -1, dtype=np.int64)
            else:
                s0 = starts[sel]
                uptime = (
                    (u8[s0 + 4].astype(np.int64) << 24) | (u8[s0 + 5].astype(np.int64) << 16)
                    | (u8[s0 + 6].astype(np.int64) << 8) | u8[s0 + 7]
                )  # fmt: skip
            nz = c > 0
            bodies = list(map(mv.__getitem__, map(slice, a[nz].tolist(), b[nz].tolist())))
            self._group(t, exporters[e], d, self._src_ports[e]).blocks.append(
                (bodies, c[nz], export_ms[sel][nz], uptime[nz], np.zeros(len(bodies), dtype=np.int64),
                 recv[sel[nz] - run.start], sel[nz])
            )  # fmt: skip
        stream_keys = self._run_keys[inv][:, :3]
        packed = (stream_keys[:, 0] << 34) | ((stream_keys[:, 1] - 9) << 32) | stream_keys[:, 2]
        for key in np.unique(packed).tolist():
            mine = packed == key
            sel = nf[mine]
            e, v, d = stream_keys[mine][0].tolist()
            name = exporters[e]
            stream = self._stream(name, v, d, self._src_ports[e])
            if v == 9:
                self._seq_run(
                    stream, seq[sel], np.ones(len(sel), dtype=np.int64), 9, self.stats[name], records=count[mine]
                )
            else:
                self._seq_run(stream, seq[sel], count[mine], 10, self.stats[name])

    @staticmethod
    def _seq_run(
        stream: _Stream, seq: np.ndarray, advance: np.ndarray, version: int, st: ExporterStats,
        records: np.ndarray | None = None,
    ) -> None:  # fmt: skip
        """Sequence check of a stream's datagrams in a run, in order: the same counts as :meth:`_check_seq`."""
        nxt = (seq + advance) & 0xFFFFFFFF
        expected = np.empty(len(seq), dtype=np.int64)
        expected[1:] = nxt[:-1]
        expected[0] = seq[0] if stream.next_seq is None else stream.next_seq
        gap = (seq - expected) & 0xFFFFFFFF
        if version != 9:
            # the numbering that counts this datagram's records too: seq = previous seq + this count
            prev = np.empty(len(seq), dtype=np.int64)
            prev[1:] = seq[:-1]
            prev[0] = (seq[0] - advance[0]) if stream.last_seq is None else stream.last_seq
            incl = (seq - prev - advance) & 0xFFFFFFFF
            mode = np.full(len(seq), -1 if stream.inclusive is None else int(stream.inclusive), dtype=np.int64)
            if stream.inclusive is None:
                tells = np.flatnonzero((gap == 0) != (incl == 0))
                if len(tells):
                    k = int(tells[0])
                    stream.inclusive = bool(incl[k] == 0)
                    mode[k:] = int(stream.inclusive)
            gap = np.where(mode == 1, incl, gap)
            stream.last_seq = int(seq[-1])
        stream.next_seq = int(nxt[-1])
        gap = np.where((gap > 0) & (gap < 1 << 31), gap, 0)
        if version == 9 and records is not None:
            # v9 loss in flows is estimated with the records per packet seen up to each datagram
            rec_cum = stream.records + np.cumsum(records)
            dg_cum = stream.datagrams + np.arange(1, len(seq) + 1)
            stream.records, stream.datagrams = int(rec_cum[-1]), int(dg_cum[-1])
            if gap.any():
                st.lost_seq_packets += int(gap.sum())
                st.lost_seq += int(np.round(gap * rec_cum / dg_cum).sum())
        else:
            st.lost_seq += int(gap.sum())

    def _walk_one(self, data: Buf, exporter: str, received_ms: int, st: ExporterStats) -> None:
        walk = (
            {5: self._walk_v5, 7: self._walk_v7, 9: self._walk_v9, 10: self._walk_ipfix}.get(data[1])
            if len(data) >= 4 and data[0] == 0
            else None
        )
        try:
            if walk is not None:
                walk(data, exporter, received_ms, st)
            else:
                self._walk_other(data, exporter, st)
        except Exception as e:  # a decoder bug must not lose the batch; report it as bad input
            self._bad(st, exporter, 0, f"undecodable datagram ({type(e).__name__}: {e})")

    def expire(self, now_ms: int) -> DecodeResult:
        """Drop data held longer than ``pending_timeout_ms`` for a missing template; count it as lost."""
        self._groups.clear()
        self._batches, self._problems = [], []
        for key in list(self._pending):
            held = self._pending[key]
            keep = [h for h in held if now_ms - h.received_ms <= self.pending_timeout_ms]
            for h in held:
                if now_ms - h.received_ms > self.pending_timeout_ms:
                    self._lose_pending(key, h, "its template never arrived")
            if keep:
                self._pending[key] = keep
            else:
                del self._pending[key]
        return self._result()

    # ----- pass 1: headers and sets ------------------------------------------------------------

    def _where(self, offset: int | str) -> str:
        """Where in the current datagram: "<datagram label> offset N" (labels are built only when needed)."""
        if isinstance(offset, str):
            return offset
        i, fn, n = self._cur
        return f"{fn(i) if fn is not None else f'datagram {n}'} offset {offset}"

    def _problem(self, exporter: str, where: int | str, reason: str) -> None:
        if len(self._problems) < MAX_PROBLEMS:
            self._problems.append(Problem(source=exporter, where=self._where(where), reason=reason))

    def _bad(self, st: ExporterStats, exporter: str, where: int | str, reason: str) -> None:
        st.malformed += 1
        self._problem(exporter, where, reason)

    def _one_data_set(self, data: Buf, exporter: str, received_ms: int, st: ExporterStats) -> bool:
        """The usual datagram, decoded lean: a v9/IPFIX header and one data set of a known flow template.

        Returns False (nothing done) for anything else, which then takes the general walk.
        """
        if data[1] == 10:
            if len(data) < 20:
                return False
            _, length, export_s, seq, domain, set_id, set_len = _IPFIX_SET.unpack_from(data, 0)
            if length != len(data) or set_len != length - 16 or self._system_init:
                return False
            hdr, uptime, export_ms = 16, -1, export_s * 1000
        else:
            if len(data) < 24:
                return False
            _, _count, uptime, secs, seq, domain, set_id, set_len = _V9_SET.unpack_from(data, 0)
            if set_len != len(data) - 20:
                return False
            hdr, export_ms = 20, secs * 1000
        stream = self._streams.get((exporter, self._port, data[1], domain))
        if stream is None:
            return False
        t = stream.templates.get(set_id)
        if t is None or not t.plain:
            return False
        count = (set_len - 4) // t.record_length
        if count:
            g = self._groups.get(t)
            if g is None:
                g = self._groups[t] = _Group(t, exporter, domain, self._port)
            g.sets.append(
                (data[hdr + 4 : hdr + 4 + count * t.record_length], count, export_ms, uptime, 0, received_ms,
                 self._cur[0])
            )  # fmt: skip
        if hdr == 20:
            stream.records += count
            stream.datagrams += 1
            self._check_seq(stream, seq, 1, 9, st)
        else:
            self._check_seq(stream, seq, count, 10, st)
        return True

    def _walk_other(self, data: Buf, exporter: str, st: ExporterStats) -> None:
        n = len(data)
        if n < 4:
            self._bad(st, exporter, 0, f"datagram of {n} bytes is too short for any flow export")
            return
        version = _H.unpack_from(data, 0)[0]
        if version == 0 and _I.unpack_from(data, 0)[0] in (2, 4, 5):
            st.unsupported += 1  # sFlow v2/v4/v5 start with a 32-bit version
        elif version in (1, 6, 8):
            st.unsupported += 1
        else:
            self._bad(st, exporter, 0, f"unknown export version {version} (expected 5, 9 or 10)")

    def _walk_v5(self, data: Buf, exporter: str, received_ms: int, st: ExporterStats) -> None:
        if len(data) < 24:
            self._bad(st, exporter, 0, f"NetFlow v5 header truncated ({len(data)} of 24 bytes)")
            return
        _, count, uptime, secs, nsecs, seq, engine_type, engine_id, sampling = _V5.unpack_from(data, 0)
        fit = (len(data) - 24) // 48
        if count > fit:
            self._bad(
                st, exporter, 24 + fit * 48,
                f"NetFlow v5 header announces {count} records but only {fit} fit in {len(data)} bytes; kept {fit}",
            )  # fmt: skip
            count = fit
        if count == 0:
            return
        self._check_seq(self._stream(exporter, 5, engine_type << 8 | engine_id), seq, count, 5, st)
        g = self._group(V5_TEMPLATE, exporter, engine_id, self._port)
        g.sets.append(
            (data[24 : 24 + 48 * count], count, secs * 1000 + nsecs // 1_000_000, uptime, sampling & 0x3FFF,
             received_ms, self._cur[0])
        )  # fmt: skip

    def _walk_v7(self, data: Buf, exporter: str, received_ms: int, st: ExporterStats) -> None:
        """NetFlow v7: the v5 header (its last 4 bytes reserved) and up to 28 records of 52 bytes."""
        if len(data) < 24:
            self._bad(st, exporter, 0, f"NetFlow v7 header truncated ({len(data)} of 24 bytes)")
            return
        _, count, uptime, secs, nsecs, seq, _e, _i, _s = _V5.unpack_from(data, 0)
        fit = (len(data) - 24) // 52
        if count > fit:
            self._bad(
                st, exporter, 24 + fit * 52,
                f"NetFlow v7 header announces {count} records but only {fit} fit in {len(data)} bytes; kept {fit}",
            )  # fmt: skip
            count = fit
        if count == 0:
            return
        self._check_seq(self._stream(exporter, 7, 0), seq, count, 7, st)
        g = self._group(V7_TEMPLATE, exporter, 0, self._port)
        g.sets.append(
            (data[24 : 24 + 52 * count], count, secs * 1000 + nsecs // 1_000_000, uptime, 0, received_ms, self._cur[0])
        )

    def _walk_v9(self, data: Buf, exporter: str, received_ms: int, st: ExporterStats) -> None:
        if len(data) < 20:
            self._bad(st, exporter, 0, f"NetFlow v9 header truncated ({len(data)} of 20 bytes)")
            return
        _, _count, uptime, secs, seq, domain = _V9.unpack_from(data, 0)
        stream = self._stream(exporter, 9, domain)
        records = self._walk_sets(
            data, 20, len(data), 9, stream, exporter, domain, secs * 1000, uptime, received_ms, st
        )
        if records is not None:
            stream.records += records
            stream.datagrams += 1
        self._check_seq(stream, seq, 1, 9, st)

    def _walk_ipfix(self, data: Buf, exporter: str, received_ms: int, st: ExporterStats) -> None:
        if len(data) < 16:
            self._bad(st, exporter, 0, f"IPFIX message header truncated ({len(data)} of 16 bytes)")
            return
        _, length, export_s, seq, domain = _IPFIX.unpack_from(data, 0)
        end = len(data)
        if length < 16:
            self._bad(st, exporter, 2, f"IPFIX message length {length} is shorter than its header")
            return
        if length > end:
            self._bad(
                st, exporter, end,
                f"IPFIX message truncated: header says {length} bytes, datagram has {end}; decoded the complete sets",
            )  # fmt: skip
        else:
            end = length
        uptime = self._system_init.get((exporter, self._port, domain), -1) if self._system_init else -1
        stream = self._stream(exporter, 10, domain)
        records = self._walk_sets(data, 16, end, 10, stream, exporter, domain, export_s * 1000, uptime, received_ms, st)
        if records is None:
            # a set waits for its template: its record count, so the next sequence number, is unknown
            stream.next_seq = stream.last_seq = None
        else:
            self._check_seq(stream, seq, records, 10, st)

    def _stream(self, exporter: str, version: int, domain: int, port: int | None = None) -> _Stream:
        key = (exporter, self._port if port is None else port, version, domain)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream()
        return stream

    @staticmethod
    def _check_seq(stream: _Stream, seq: int, advance: int, version: int, st: ExporterStats) -> None:
        """Count what a gap in the sequence numbers lost (v5, v7 and IPFIX count records, v9 packets).

        Records are numbered as RFC 7011 says (those sent before this datagram) or, as softflowd
        does, including this datagram's; the first datagram that tells the two apart decides.
        """
        expected, last = stream.next_seq, stream.last_seq
        stream.next_seq = (seq + advance) & 0xFFFFFFFF
        if version != 9:
            stream.last_seq = seq
        if expected is None:
            return
        gap = (seq - expected) & 0xFFFFFFFF
        if version != 9 and last is not None:
            incl = (seq - last - advance) & 0xFFFFFFFF
            if stream.inclusive is None and (gap == 0) != (incl == 0):
                stream.inclusive = incl == 0
            if stream.inclusive:
                gap = incl
        if 0 < gap < 1 << 31:  # larger: reordered or restarted, not lost
            if version == 9:
                st.lost_seq_packets += gap
                st.lost_seq += round(gap * stream.records / stream.datagrams) if stream.datagrams else 0
            else:
                st.lost_seq += gap

    def _walk_sets(
        self, data: Buf, off: int, end: int, version: int, stream: _Stream, exporter: str, domain: int,
        export_ms: int, uptime: int, received_ms: int, st: ExporterStats,
    ) -> int | None:  # fmt: skip
        """Walk the (flow)sets of one v9 packet / IPFIX message; returns data records seen (None: unknown)."""
        records: int | None = 0
        tmpl_set, opt_set = (0, 1) if version == 9 else (2, 3)
        templates, groups = stream.templates, self._groups
        while end - off >= 4:
            set_id, set_len = _HH.unpack_from(data, off)
            if set_len < 4 or off + set_len > end:
                if version == 9 and set_id == 0 and set_len == 0 and not any(data[off:end]):
                    break  # zero padding at the end of a v9 packet
                self._bad(
                    st, exporter, off,
                    f"set {set_id} has length {set_len} but {end - off} bytes remain; rest of the datagram skipped",
                )  # fmt: skip
                return records
            if set_id >= 256:
                t = templates.get(set_id)
                if t is not None and t.plain:  # the common case, kept lean: file the set under its template
                    count = (set_len - 4) // t.record_length
                    if count:
                        g = groups.get(t)
                        if g is None:
                            g = groups[t] = _Group(t, exporter, domain, self._port)
                        g.sets.append(
                            (data[off + 4 : off + 4 + count * t.record_length], count, export_ms, uptime, 0,
                             received_ms, self._cur[0])
                        )  # fmt: skip
                    if records is not None:
                        records += count
                    off += set_len
                    continue
            body = data[off + 4 : off + set_len]
            where = off
            if set_id == tmpl_set:
                self._templates_set(body, version, stream, exporter, domain, False, st, where)
            elif set_id == opt_set:
                self._templates_set(body, version, stream, exporter, domain, True, st, where)
            elif set_id >= 256:
                n = self._data_set(
                    body, version, stream, exporter, domain, set_id, export_ms, uptime, received_ms, st, where
                )
                records = None if n is None or records is None else records + n
                if version == 10 and self._system_init:  # an options record of this message may have set it
                    uptime = self._system_init.get((exporter, self._port, domain), -1)
            off += set_len
        return records

    def _templates_set(
        self, body: Buf, version: int, stream: _Stream, exporter: str, domain: int, options: bool,
        st: ExporterStats, where: int | str,
    ) -> None:  # fmt: skip
        p, end = 0, len(body)
        while end - p >= 4:
            start = p
            if options and version == 9:
                if end - p < 6:
                    break
                tid, scope_len, opt_len = _HHH.unpack_from(body, p)
                p += 6
                if tid == 0 and not any(body[start:]):
                    break  # padding
                if scope_len % 4 or opt_len % 4:
                    self._bad(
                        st,
                        exporter,
                        where,
                        f"options template {tid}: scope/option lengths {scope_len}/{opt_len} are not multiples of 4",
                    )
                    return
                scope_count, count = scope_len // 4, (scope_len + opt_len) // 4
            else:
                tid, count = _HH.unpack_from(body, p)
                p += 4
                if tid == 0 and count == 0 and not any(body[start:]):
                    break  # padding
                scope_count = 0
                if options:
                    if end - p < 2:
                        self._bad(st, exporter, where, f"options template {tid} truncated")
                        return
                    scope_count = _H.unpack_from(body, p)[0]
                    p += 2
            if tid < 256:
                if version == 10 and count == 0 and tid in (2, 3):
                    self._n_templates -= len(stream.templates)
                    stream.templates.clear()
                    self._template_epoch += 1
                    continue
                self._bad(st, exporter, where, f"template id {tid} is reserved (must be 256 or more)")
                return
            if count == 0:  # IPFIX template withdrawal (RFC 7011 section 8.1)
                if stream.templates.pop(tid, None) is not None:
                    self._template_epoch += 1
                    self._n_templates -= 1
                continue
            if options and (scope_count == 0 or scope_count > count):
                self._bad(st, exporter, where, f"options template {tid} has {scope_count} scope fields of {count}")
                return
            fields: list[tuple[int, int, int]] = []
            for k in range(count):
                if end - p < 4:
                    self._bad(st, exporter, where, f"template {tid} truncated at field {k + 1} of {count}")
                    return
                eid, length = _HH.unpack_from(body, p)
                p += 4
                pen = 0
                if version == 10 and eid & 0x8000:
                    if end - p < 4:
                        self._bad(st, exporter, where, f"template {tid} truncated at field {k + 1} of {count}")
                        return
                    pen = _I.unpack_from(body, p)[0]
                    eid &= 0x7FFF
                    p += 4
                if options and version == 9 and k < scope_count:
                    pen = -1  # v9 scope types (system, interface, ...) are not field types
                fields.append((pen, eid, length))
            key = (exporter, self._port, version, domain, tid)
            old = t = stream.templates.get(tid)  # exporters resend their templates: compile only what changed
            if t is None or t.fields != tuple(fields) or t.scope_count != scope_count or t.options != options:
                t = compile_template(version, tid, fields, scope_count=scope_count, options=options)
            if t.fixed and t.record_length == 0:
                self._bad(st, exporter, where, f"template {tid} has records of length 0")
                continue
            if old is None:
                if self._n_templates >= MAX_TEMPLATES:
                    self._bad(st, exporter, where, f"template {tid} dropped: {MAX_TEMPLATES} templates already held")
                    continue
                self._n_templates += 1
            if old is not t:
                self._template_epoch += 1
            stream.templates[tid] = t
            held = self._pending.pop(key, None)
            if held:
                self._pending_count -= len(held)
                st.pending -= len(held)
                for h in held:
                    self._use_data(
                        t, h.body, version, exporter, domain, h.export_ms, h.uptime_ms, st, h.where, h.received_ms
                    )

    def _data_set(
        self, body: Buf, version: int, stream: _Stream, exporter: str, domain: int, set_id: int,
        export_ms: int, uptime: int, received_ms: int, st: ExporterStats, where: int | str,
    ) -> int | None:  # fmt: skip
        t = stream.templates.get(set_id)
        if t is None:
            key = (exporter, self._port, version, domain, set_id)
            self._hold(key, _Held(bytes(body), export_ms, uptime, received_ms, self._where(where)), st)
            return None
        return self._use_data(t, body, version, exporter, domain, export_ms, uptime, st, where, received_ms)

    def _use_data(
        self, t: Template, body: Buf, version: int, exporter: str, domain: int,
        export_ms: int, uptime: int, st: ExporterStats, where: int | str, received_ms: int,
    ) -> int:  # fmt: skip
        if t.options:
            return self._options_data(t, body, version, exporter, domain, st, where)
        if t.fixed:
            count = t.record_count(len(body))
            if count == 0:
                return 0
            body = body[: count * t.record_length]
        else:
            try:
                count = len(t._walk(body)[0])
            except RecordError as e:
                self._bad(st, exporter, where, f"data set of template {t.template_id}: {e}; set skipped")
                return 0
        if not t.has_address:
            st.other_records += count
            return count
        g = self._group(t, exporter, domain, self._port)
        g.sets.append(
            (body, count, export_ms, uptime, 0, received_ms, where if isinstance(where, str) else self._cur[0])
        )
        return count

    def _hold(self, key: tuple[str, int, int, int, int], held: _Held, st: ExporterStats) -> None:
        if self._pending_count >= self.max_pending:
            oldest_key = next(iter(self._pending))
            lst = self._pending[oldest_key]
            self._lose_pending(oldest_key, lst.pop(0), f"more than {self.max_pending} data sets held")
            if not lst:
                del self._pending[oldest_key]
        self._pending.setdefault(key, []).append(held)
        self._pending_count += 1
        st.pending += 1

    def _lose_pending(self, key: tuple[str, int, int, int, int], held: _Held, why: str) -> None:
        exporter = key[0]
        st = self.stats.setdefault(exporter, ExporterStats())
        st.pending -= 1
        st.pending_lost += 1
        self._pending_count -= 1
        self._problem(exporter, held.where, f"data set of template {key[4]} (domain {key[3]}) dropped: {why}")

    def _options_data(
        self, t: Template, body: Buf, version: int, exporter: str, domain: int, st: ExporterStats, where: int | str
    ) -> int:
        try:
            roles, n = t.read(body[: t.record_count(len(body)) * t.record_length] if t.fixed else body)
        except RecordError as e:
            self._bad(st, exporter, where, f"options data of template {t.template_id}: {e}; set skipped")
            return 0
        if n == 0:
            return 0
        rates = sampling_rates(roles, n)
        if "system_init_ms" in roles:
            init = int(roles["system_init_ms"][-1])
            if self._system_init.get((exporter, self._port, domain)) != init:
                self._flush()
                self._system_init[(exporter, self._port, domain)] = init
                self._template_epoch += 1  # decode_buffer: which datagrams are simple changes too
        if not rates.any():
            return n
        table = self._sampling.setdefault((exporter, self._port, version, domain), {})
        ids = roles.get("sampler_id", roles.get("selector_id"))
        tids = roles.get("template_id")
        for i in range(n):  # options records are few: one per sampler
            rate = int(rates[i])
            if rate == 0:
                continue
            key: object = ("s", int(ids[i])) if ids is not None else ("t", int(tids[i])) if tids is not None else None
            if table.get(key) != rate:
                self._flush()  # records already filed were exported under the old rate
                table[key] = rate
        return n

    def _group(self, t: Template, exporter: str, domain: int, port: int) -> _Group:
        # templates belong to one transport session and domain; the v5 and v7 layouts are shared by all
        k: object = (t.version, exporter, port, domain) if t.version in (5, 7) else t
        g = self._groups.get(k)
        if g is None:
            g = self._groups[k] = _Group(t, exporter, domain, port)
        return g

    # ----- pass 2: records to columns ----------------------------------------------------------

    def _flush(self) -> None:
        groups = list(self._groups.values())
        self._groups.clear()  # in place: the set walker holds a reference to this dict
        for g in groups:
            batch = self._read_group(g)
            if batch is not None and batch.num_rows:
                self._batches.append(batch)
                self.stats[g.exporter].flows += batch.num_rows

    def _read_group(self, g: _Group) -> pa.RecordBatch | None:
        t = g.template
        bodies: list[Buf] = []
        # counts, export ms, uptime ms, v5 sampling, received ms
        cols: list[list[np.ndarray]] = [[], [], [], [], []]
        places: list[int | str] = []  # where each set came from: datagram index in the batch, or a label
        if g.sets:
            set_bodies, *per_set, set_places = zip(*g.sets, strict=True)
            bodies.extend(set_bodies)
            places.extend(set_places)
            for c, tup in zip(cols, per_set, strict=True):
                c.append(np.asarray(tup, dtype=np.int64))
        for block_bodies, *arrays, block_places in g.blocks:
            bodies.extend(block_bodies)
            places.extend(block_places.tolist())
            for c, arr in zip(cols, arrays, strict=True):
                c.append(arr)
        counts, export_ms, uptime_ms, v5_sampling, received = (
            np.concatenate(c).astype(np.int64, copy=False) for c in cols
        )
        if t.fixed:
            roles, n = t.read(b"".join(bodies), int(counts.sum()))
        else:
            parts = [t.read(b)[0] for b in bodies]
            roles = {r: np.concatenate([p[r] for p in parts]) for r in parts[0]}
            n = int(counts.sum())
        keep = roles.pop("_sampled_ip", None)
        if keep is not None:  # sampled packet headers: those without an IP packet are no flow
            self.stats[g.exporter].other_records += int(n - keep.sum())
            roles = {r: v[keep] for r, v in roles.items()}
            n = int(keep.sum())
        if n == 0:
            return None
        sampling: np.ndarray | int
        if t.version in (5, 7):
            lo, hi = int(v5_sampling.min()), int(v5_sampling.max())
            sampling = lo if lo == hi else np.repeat(v5_sampling.astype(np.uint64), counts)
        else:
            sampling = self._sampling_for(t, g.exporter, g.port, g.domain, roles, n)
        ctx = Context(counts, export_ms, uptime_ms, g.exporter, g.domain, sampling, keep)
        batch = build_batch(roles, n, t.version, ctx)
        if self._range is None:
            return batch
        return self._check_times(batch, g, counts, received, places, keep)

    def _check_times(
        self, batch: pa.RecordBatch, g: _Group, counts: np.ndarray, received: np.ndarray, places: list[int | str],
        keep: np.ndarray | None,
    ) -> pa.RecordBatch:  # fmt: skip
        """Leave out the records dated outside the plausible range, each a problem naming its datagram."""
        assert self._range is not None
        tr = self._range
        if self._reference_ms is not None:
            lo, hi = tr.bounds(self._reference_ms)
            what = f"the input's time plus {tr.slack_ms / 3_600_000:g} h"
        else:
            if (received <= 0).any():  # no arrival time given (0): now
                received = np.where(received > 0, received, int(time.time() * 1000))
            lo, hi = tr.bounds(int(received.max()))
            what = f"the datagram's arrival plus {tr.slack_ms / 3_600_000:g} h"
        if tr.latest_ms is not None:
            what = ""
        batch, check = check_times(batch, lo, hi, what)
        st = self.stats[g.exporter]
        st.end_before_start_repaired += check.repaired
        if not check.rejected:
            return batch
        set_of = np.repeat(np.arange(len(counts)), counts)
        first = np.cumsum(counts) - counts
        in_set = np.arange(int(counts.sum())) - np.repeat(first, counts)
        if keep is not None:
            set_of, in_set = set_of[keep], in_set[keep]
        for row, reason in check.rejected:
            k = int(set_of[row])
            place = places[k]
            label = place if isinstance(place, str) else self._label(place)
            st.bad_time += 1
            st.malformed += 1
            self._problem(g.exporter, f"{label}, record {int(in_set[row]) + 1} of its data set", reason)
        return batch

    def _label(self, i: int) -> str:
        """Datagram ``i`` of the current batch, as the caller names it."""
        _, fn, _ = self._cur
        return fn(i) if fn is not None else f"datagram {i + 1} of the batch"

    def _sampling_for(
        self, t: Template, exporter: str, port: int, domain: int, roles: dict[str, np.ndarray], n: int
    ) -> np.ndarray | int:
        """Per record: the rate the record states, else its sampler's, its template's, the exporter's."""
        table = self._sampling.get((exporter, port, t.version, domain))
        if not t.states_sampling:
            fallback = table and (table.get(("t", t.template_id)) or table.get(None))
            if not (table and t.has_sampler_id):
                return fallback or 0  # one rate for every record: no per-record array
        rate = sampling_rates(roles, n)
        if not table:
            return rate
        ids = roles.get("sampler_id", roles.get("selector_id"))
        if ids is not None and (rate == 0).any():
            for sid in np.unique(ids):
                r = table.get(("s", int(sid)))
                if r:
                    rate = np.where((rate == 0) & (ids == sid), np.uint64(r), rate)
        fallback = table.get(("t", t.template_id)) or table.get(None)
        if fallback:
            rate = np.where(rate == 0, np.uint64(fallback), rate)
        return rate

    def _result(self) -> DecodeResult:
        batches, self._batches = self._batches, []
        problems, self._problems = self._problems, []
        if not batches:
            return DecodeResult(None, problems)
        batch = batches[0] if len(batches) == 1 else pa.concat_batches(batches)
        return DecodeResult(batch, problems)
