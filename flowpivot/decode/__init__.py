"""Pure decoders of flow export datagrams: NetFlow v5, v7, v9 (RFC 3954), IPFIX (RFC 7011).

Bytes in, Arrow record batches of :data:`flowpivot.schema.STORE_SCHEMA` out; no sockets, no files.
One :class:`FlowDecoder` keeps the state an export stream needs (templates, sampling rates,
sequence numbers, data held for a template that has not arrived yet), scoped per transport
session (exporter address, UDP source port), observation domain and template id.

A batch of datagrams is decoded in two passes. The first walks the headers and sets in Python
(a few struct reads per set), learns templates and options, and files each data set under its
template. The second reads each template's records of the whole batch with one
``np.frombuffer`` and turns them into columns, so no Python code runs per flow record.

Modules: ``headers`` (the header and v5/v7 record layouts, declared once), ``state`` (what a
decoder holds), ``walk`` (pass 1 per datagram), ``fast`` (``decode_buffer``'s NumPy pass 1),
``columns`` (pass 2), ``templates`` (template compilation), ``records`` (role arrays to columns),
``elements`` (the information elements read), ``packets`` (sampled packet headers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from ..errors import Problem
from ..timerange import TimeRange
from .columns import Reader
from .fast import FastPath
from .sflow import SFLOW_V5
from .state import V5_TEMPLATE, V7_TEMPLATE, Datagram, DecodeResult, ExporterStats
from .walk import Walker

__all__ = ["FlowDecoder", "DecodeResult", "ExporterStats", "V5_TEMPLATE", "V7_TEMPLATE"]


class FlowDecoder(Reader, FastPath, Walker):
    """Decodes NetFlow v5/v7/v9 and IPFIX datagrams of any number of exporters into STORE_SCHEMA batches.

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

    #: decode_many/decode_batches take (data, exporter, received_ms, source_port) (the collector checks)
    ACCEPTS_SOURCE_PORT = True

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
                if data[:4] == SFLOW_V5:  # sFlow v5, recognised by content: flowpivot/decode/sflow.py
                    self._walk_sflow(data, exporter, received_ms, st)
                    continue
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
