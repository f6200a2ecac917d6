"""The state a :class:`flowpivot.decode.FlowDecoder` keeps, and the per-exporter counters it reports.

Split from the decoder so that its parts (the per-datagram walk, ``decode_buffer``'s NumPy path,
the reading of records into columns) each live in a module of their own, as mixins of
:class:`DecoderState`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from ..errors import Problem
from ..timerange import TimeRange
from .headers import V5_RECORD, V7_RECORD
from .sflow import SflowDecoder
from .templates import Template, compile_template

__all__ = ["ExporterStats", "DecodeResult", "DecoderState", "Datagram", "Buf", "V5_TEMPLATE", "V7_TEMPLATE"]

MAX_TEMPLATES = 100_000
Buf = bytes | memoryview  # datagrams are read in place: memoryviews of a mapped capture need no copy
#: (data, exporter, received ms) or (data, exporter, received ms, UDP source port)
Datagram = tuple[Buf, str, int] | tuple[Buf, str, int, int]
MAX_PROBLEMS = 10_000

# The NetFlow v5 and v7 records compile like any template (their fields are IPFIX elements).
V5_TEMPLATE = compile_template(5, 0, [(0, e, n) for _, e, n in V5_RECORD])
assert V5_TEMPLATE.record_length == 48
V7_TEMPLATE = compile_template(7, 0, [(0, e, n) for _, e, n in V7_RECORD])
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
    unsupported: int = 0  # datagrams of other protocols (sFlow v2/v4, NetFlow v1/v6/v8)
    other_records: int = 0  # data records of templates without addresses (NAT events, packet samples)
    sflow_counter_samples: int = 0  # sFlow counter samples, set aside
    sflow_skipped_records: int = 0  # sFlow flow records flowpivot does not store (switch, router, ...)
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


class DecoderState:
    """What a decoder holds between and during batches. The methods named here are the mixins'."""

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
        self._sflow = SflowDecoder()  # sFlow v5 samples waiting for the next flush (sflow.py)

    # implemented by the mixins (walk.py, fast.py, columns.py)
    def _flush(self) -> None:
        raise NotImplementedError

    def _problem(self, exporter: str, where: int | str, reason: str) -> None:
        raise NotImplementedError

    def _group(self, t: Template, exporter: str, domain: int, port: int) -> _Group:
        raise NotImplementedError

    def _stream(self, exporter: str, version: int, domain: int, port: int | None = None) -> _Stream:
        raise NotImplementedError

    def _walk_one(self, data: Buf, exporter: str, received_ms: int, st: ExporterStats) -> None:
        raise NotImplementedError
