"""Pass 1 of a batch, per datagram: headers and sets walked in Python, templates and options
learnt, each data set filed under its template (or held until its template comes)."""

from __future__ import annotations

import struct

from ..errors import Problem
from .headers import IPFIX_FIRST_SET, IPFIX_HEADER, SET_HEADER, V5_HEADER, V7_HEADER, V9_FIRST_SET, V9_HEADER
from .records import sampling_rates
from .sflow import SFLOW_V5
from .state import (
    MAX_PROBLEMS,
    MAX_TEMPLATES,
    V5_TEMPLATE,
    V7_TEMPLATE,
    Buf,
    DecoderState,
    ExporterStats,
    _Group,
    _Held,
    _Stream,
)
from .templates import RecordError, Template, compile_template

_H = struct.Struct(">H")
_HH = struct.Struct(">HH")
_HHH = struct.Struct(">HHH")
_I = struct.Struct(">I")


class Walker(DecoderState):
    """The per-datagram walk of NetFlow v5/v7/v9 and IPFIX, and the state it keeps up to date."""

    def _walk_one(self, data: Buf, exporter: str, received_ms: int, st: ExporterStats) -> None:
        walk = (
            {5: self._walk_v5, 7: self._walk_v7, 9: self._walk_v9, 10: self._walk_ipfix}.get(data[1])
            if len(data) >= 4 and data[0] == 0
            else None
        )
        try:
            if data[:4] == SFLOW_V5:  # sFlow v5, recognised by content: flowpivot/decode/sflow.py
                self._walk_sflow(data, exporter, received_ms, st)
            elif walk is not None:
                walk(data, exporter, received_ms, st)
            else:
                self._walk_other(data, exporter, st)
        except Exception as e:  # a decoder bug must not lose the batch; report it as bad input
            self._bad(st, exporter, 0, f"undecodable datagram ({type(e).__name__}: {e})")

    def _walk_sflow(self, data: Buf, exporter: str, received_ms: int, st: ExporterStats) -> None:
        """One sFlow v5 datagram: its flow samples wait in ``self._sflow`` for the next flush."""
        w = self._sflow.walk(data, exporter, received_ms)
        for offset, reason in w.problems:
            self._bad(st, exporter, offset, reason)
        st.sflow_counter_samples += w.counter_samples
        st.sflow_skipped_records += w.skipped_records
        st.other_records += w.other_samples + w.no_flow
        st.lost_seq += w.lost

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
            _, length, export_s, seq, domain, set_id, set_len = IPFIX_FIRST_SET.unpack(data)
            if length != len(data) or set_len != length - 16 or self._system_init:
                return False
            hdr, uptime, export_ms = 16, -1, export_s * 1000
        else:
            if len(data) < 24:
                return False
            _, _count, uptime, secs, seq, domain, set_id, set_len = V9_FIRST_SET.unpack(data)
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
        self._walk_fixed(data, exporter, received_ms, st, 5)

    def _walk_v7(self, data: Buf, exporter: str, received_ms: int, st: ExporterStats) -> None:
        self._walk_fixed(data, exporter, received_ms, st, 7)

    def _walk_fixed(self, data: Buf, exporter: str, received_ms: int, st: ExporterStats, version: int) -> None:
        """NetFlow v5 (48-byte records) or v7 (the v5 header, its last 4 bytes reserved; 52-byte records)."""
        header, t = (V5_HEADER, V5_TEMPLATE) if version == 5 else (V7_HEADER, V7_TEMPLATE)
        h, size = header.size, t.record_length
        if len(data) < h:
            self._bad(st, exporter, 0, f"NetFlow v{version} header truncated ({len(data)} of {h} bytes)")
            return
        fields = dict(zip((f for f, _ in header.fields), header.unpack(data), strict=True))
        count = fields["count"]
        fit = (len(data) - h) // size
        if count > fit:
            self._bad(
                st, exporter, h + fit * size,
                f"NetFlow v{version} header announces {count} records but only {fit} fit in {len(data)} bytes; "
                f"kept {fit}",
            )  # fmt: skip
            count = fit
        if count == 0:
            return
        engine_id = fields.get("engine_id", 0)
        stream = self._stream(exporter, version, fields.get("engine_type", 0) << 8 | engine_id)
        self._check_seq(stream, fields["sequence"], count, version, st)
        g = self._group(t, exporter, engine_id, self._port)
        export_ms = fields["unix_secs"] * 1000 + fields["unix_nsecs"] // 1_000_000
        g.sets.append(
            (data[h : h + size * count], count, export_ms, fields["sys_uptime"], fields.get("sampling", 0) & 0x3FFF,
             received_ms, self._cur[0])
        )  # fmt: skip

    def _walk_v9(self, data: Buf, exporter: str, received_ms: int, st: ExporterStats) -> None:
        if len(data) < 20:
            self._bad(st, exporter, 0, f"NetFlow v9 header truncated ({len(data)} of 20 bytes)")
            return
        _, _count, uptime, secs, seq, domain = V9_HEADER.unpack(data)
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
        _, length, export_s, seq, domain = IPFIX_HEADER.unpack(data)
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
            set_id, set_len = SET_HEADER.unpack(data, off)
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
