"""``decode_buffer``'s NumPy path: the headers of a whole batch of datagrams lying in one buffer
read at once, the usual datagrams filed per template, their sequence numbers checked per stream."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from ..errors import Problem
from .headers import IPFIX_FIRST_SET, IPFIX_HEADER, V5_HEADER, V9_FIRST_SET, V9_HEADER
from .state import V5_TEMPLATE, DecoderState, ExporterStats, _Stream


class FastPath(DecoderState):
    """Datagrams in one buffer, classified and filed with array operations."""

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

        ipfix, v9, v5 = (
            lambda f: IPFIX_FIRST_SET.column(u8, s, f),
            lambda f: V9_FIRST_SET.column(u8, s, f),
            lambda f: V5_HEADER.column(u8, s, f),
        )
        version = np.where(usable & (u8[s] == 0), u8[s + 1], 0)
        hdr = np.where(version == 10, IPFIX_HEADER.size, V9_HEADER.size)
        set_id = np.where(version == 10, ipfix("set_set_id"), v9("set_set_id"))
        set_len = np.where(version == 10, ipfix("set_length"), v9("set_length"))
        domain = np.where(version == 10, ipfix("domain"), v9("source_id"))
        seq = np.where(version == 10, ipfix("sequence"), np.where(version == 5, v5("sequence"), v9("sequence")))
        export_ms = np.where(version == 10, ipfix("export_time"), v9("unix_secs")) * 1000
        v5_count = v5("count")
        one_set = ((version == 10) & (ipfix("length") == lens) & (set_len == lens - IPFIX_HEADER.size)) | (
            (version == 9) & (set_len == lens - 20)
        )
        candidate = (one_set & (set_id >= 256)) | ((version == 5) & (v5_count > 0) & (24 + 48 * v5_count <= lens))

        received = np.asarray(received_ms, dtype=np.int64)
        done, epoch = 0, -1
        simple = candidate
        while done < n:
            if epoch != self._template_epoch:  # templates changed: which datagrams are simple, again
                epoch = self._template_epoch
                simple = self._resolve(candidate, version, exporter_index, exporters, domain, set_id, done)
            run_end = done + int(np.argmin(simple[done:])) if not simple[done:].all() else n
            if run_end > done:
                self._file_run(slice(done, run_end), u8, mv, starts, lens, exporter_index, exporters, version, hdr,
                               set_len, domain, seq, export_ms, v5_count, received)  # fmt: skip
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
        domain: np.ndarray, seq: np.ndarray, export_ms: np.ndarray, v5_count: np.ndarray, received: np.ndarray,
    ) -> None:  # fmt: skip
        """File the data of a run of simple datagrams under their templates, and check their sequence numbers."""
        idx = np.arange(run.start, run.stop)
        recv = received[run.start : run.stop]
        for e, c in zip(*np.unique(exporter_index[idx], return_counts=True), strict=True):
            self.stats[exporters[e]].datagrams += int(c)
        # v5: one group per (exporter, engine id); the header fields are gathered for the whole run
        i5 = idx[version[idx] == 5]
        if len(i5):
            s5 = starts[i5]
            count = v5_count[i5]
            uptime = V5_HEADER.column(u8, s5, "sys_uptime")
            nsecs = V5_HEADER.column(u8, s5, "unix_nsecs")
            engine = V5_HEADER.column(u8, s5, "engine_type") << 8 | V5_HEADER.column(u8, s5, "engine_id")
            sampling = V5_HEADER.column(u8, s5, "sampling") & 0x3FFF
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
                uptime = V9_HEADER.column(u8, starts[sel], "sys_uptime")
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
