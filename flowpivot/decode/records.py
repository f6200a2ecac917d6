"""Flow records (role arrays from a template) -> columns of flowpivot.schema.STORE_SCHEMA.

Everything here works on whole arrays: one call per template and batch of datagrams.
Times follow RFC 3954 section 8 (v9 FIRST/LAST_SWITCHED are sysUpTime milliseconds) and
RFC 7011 / RFC 5102 (flowStart* in seconds, milliseconds, NTP-format micro- and nanoseconds,
delta microseconds before the export time, or sysUpTime plus systemInitTimeMilliseconds).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pyarrow as pa

from ..schema import STORE_SCHEMA

__all__ = ["Context", "build_batch", "sampling_rates"]

NTP_EPOCH_OFFSET_S = 2_208_988_800  # 1900-01-01 to 1970-01-01
U64 = np.uint64
#: the type of each store column, from the one declaration in flowpivot/schema.py
TYPES: dict[str, pa.DataType] = {f.name: f.type for f in STORE_SCHEMA}
#: store column -> the roles that fill it, in order of preference (integer columns read as they are)
_INT_COLUMNS = (
    ("src_port", ("src_port",)), ("dst_port", ("dst_port",)), ("protocol", ("protocol",)),
    ("tcp_flags", ("tcp_flags",)), ("src_as", ("src_as",)), ("dst_as", ("dst_as",)), ("direction", ("direction",)),
    ("rev_tcp_flags", ("rev_tcp_flags",)), ("packets", ("packets", "packets_total")),
    ("bytes", ("bytes", "bytes_total")), ("rev_packets", ("rev_packets", "rev_packets_total")),
    ("rev_bytes", ("rev_bytes", "rev_bytes_total")), ("in_if", ("in_if", "in_phys_if")),
    ("out_if", ("out_if", "out_phys_if")),
)  # fmt: skip
_NULL_CACHE: dict[tuple[str, int], pa.Array] = {}


class Context:
    """What records owe to their datagram header or exporter rather than to themselves.

    Header values are kept per data set and repeated per record only when a column needs them.
    """

    def __init__(
        self, counts: np.ndarray, export_ms: np.ndarray, uptime_ms: np.ndarray, exporter: str, domain: int,
        sampling: np.ndarray | int, keep: np.ndarray | None = None,
    ) -> None:  # fmt: skip
        self.counts = counts
        self._export_ms = export_ms  # per set: export time of the datagram
        self._uptime_ms = uptime_ms  # per set: v5/v9 sysUpTime; IPFIX: systemInitTime if known, else -1
        self.exporter = exporter
        self.domain = domain  # v9 source id / IPFIX ODID / v5 engine id
        self.sampling = sampling  # per record or for all; 0 where nothing says
        self.keep = keep  # records kept (sampled packet headers that held an IP packet); None: all

    @cached_property
    def export_ms(self) -> np.ndarray:
        out = np.repeat(np.asarray(self._export_ms, dtype=np.int64), self.counts)
        return out if self.keep is None else out[self.keep]

    @cached_property
    def uptime_ms(self) -> np.ndarray:
        out = np.repeat(np.asarray(self._uptime_ms, dtype=np.int64), self.counts)
        return out if self.keep is None else out[self.keep]


def _ntp_to_ms(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint64)
    sec = (v >> U64(32)).astype(np.int64) - NTP_EPOCH_OFFSET_S
    frac_ms = (((v & U64(0xFFFFFFFF)) * U64(1000)) >> U64(32)).astype(np.int64)
    return sec * 1000 + frac_ms


def _time(roles: dict[str, np.ndarray], which: str, version: int, ctx: Context) -> np.ndarray | None:
    """Start (``which='start'``) or end time in ms since the epoch, from the best element present
    (None: the record states neither this time nor an observation time)."""
    ms, s, us, ns, delta, uptime = (
        f"{which}_ms",
        f"{which}_s",
        f"{which}_us",
        f"{which}_ns",
        f"{which}_delta_us",
        "first_uptime" if which == "start" else "last_uptime",
    )
    if ms in roles:
        return roles[ms].astype(np.int64)
    if s in roles:
        # seconds beyond 2^40 (year 36812) would wrap in ms: -1, which no plausible range holds
        v = roles[s].astype(np.uint64)
        return np.where(v < U64(1 << 40), v.astype(np.int64) * 1000, -1)
    if us in roles:
        return _ntp_to_ms(roles[us])
    if ns in roles:
        return _ntp_to_ms(roles[ns])
    if delta in roles:
        return ctx.export_ms - (roles[delta].astype(np.int64) // 1000)
    if uptime in roles:
        v = roles[uptime].astype(np.int64)
        if version == 10:
            init = roles["system_init_ms"].astype(np.int64) if "system_init_ms" in roles else ctx.uptime_ms
            return np.where(init >= 0, init + v, ctx.export_ms)
        # v5/v9: ms of uptime; the header gives uptime and wall clock at export. A signed 32-bit
        # difference survives the uptime counter wrapping (every 49.7 days).
        ago = ((ctx.uptime_ms - v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
        return ctx.export_ms - ago
    return None


def _observation(roles: dict[str, np.ndarray]) -> np.ndarray | None:
    """observationTime* (PSAMP packet reports, NAT events): the time of a single observation."""
    if "observation_ms" in roles:
        return roles["observation_ms"].astype(np.int64)
    if "observation_us" in roles:
        return _ntp_to_ms(roles["observation_us"])
    if "observation_ns" in roles:
        return _ntp_to_ms(roles["observation_ns"])
    if "observation_s" in roles:
        return roles["observation_s"].astype(np.int64) * 1000
    return None


def flow_times(roles: dict[str, np.ndarray], version: int, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) in ms. A record that states only one of the two (Nokia BRAS sends
    flowStartMilliseconds alone) takes it for both; one that states neither takes its observation
    time (PSAMP, NAT events), else the export time."""
    start = _time(roles, "start", version, ctx)
    end = _time(roles, "end", version, ctx)
    if start is None and end is None:
        start = end = _observation(roles)
        if start is None:
            start = end = ctx.export_ms
    elif start is None:
        start = end
    elif end is None:
        end = start
    assert start is not None and end is not None
    return start, end


def sampling_rates(roles: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Sampling rate each record states itself (0 where it states none)."""
    rate = np.zeros(n, dtype=np.uint64)
    if "sampling_interval" in roles:
        rate = roles["sampling_interval"].astype(np.uint64)
    if "sampler_random_interval" in roles:
        rate = np.where(rate == 0, roles["sampler_random_interval"].astype(np.uint64), rate)
    if "sampling_population" in roles:
        # random n-out-of-N (RFC 5477 selectorAlgorithm 3): N / n, n = 1 when not stated. Cisco
        # IOS-XR sends samplingPacketInterval 1 beside it, with no samplingPacketSpace
        population = roles["sampling_population"].astype(np.uint64)
        size = roles["sampling_size"].astype(np.uint64) if "sampling_size" in roles else np.ones(n, dtype=np.uint64)
        per = np.where(size > 0, population // np.maximum(size, U64(1)), U64(0))
        rate = np.where(rate == 0, per, rate)
    if "sampling_packet_interval" in roles and "sampling_packet_space" in roles:
        # systematic count-based (selectorAlgorithm 1): (interval + space) / interval
        interval = roles["sampling_packet_interval"].astype(np.uint64)
        space = roles["sampling_packet_space"].astype(np.uint64)
        per = np.where(interval > 0, (interval + space) // np.maximum(interval, U64(1)), U64(0))
        rate = np.where(rate == 0, per, rate)
    if "sampling_probability" in roles:
        # uniform probabilistic (selectorAlgorithm 4/5): 1 / p, the float read from its bits
        raw = roles["sampling_probability"]
        p = raw.view(np.float32) if raw.dtype.itemsize == 4 else raw.astype(np.uint64).view(np.float64)
        ok = np.isfinite(p) & (p > 0) & (p <= 1)
        per = np.where(ok, np.rint(1.0 / np.where(ok, p, 1.0)), 0).astype(np.uint64)
        rate = np.where(rate == 0, per, rate)
    if "selector_observed" in roles and "selector_selected" in roles:
        # RFC 5477 selector report: packets observed / packets selected, the rate achieved
        seen = roles["selector_observed"].astype(np.float64)
        kept = roles["selector_selected"].astype(np.float64)
        per = np.where(kept > 0, np.rint(seen / np.maximum(kept, 1.0)), 0).astype(np.uint64)
        rate = np.where(rate == 0, per, rate)
    return rate


def _arr(values: np.ndarray, type_: pa.DataType, mask: np.ndarray | None = None) -> pa.Array:
    if mask is not None:
        return pa.array(values, type=type_, mask=mask)
    data = np.ascontiguousarray(values, dtype=type_.to_pandas_dtype())
    return pa.Array.from_buffers(type_, len(data), [None, pa.py_buffer(data)])


def _col(name: str, values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """Store column ``name`` of ``values``, in the column's type (from the schema)."""
    type_ = TYPES[name]
    return _arr(values.astype(type_.to_pandas_dtype(), copy=False), type_, mask)


def _const(value: int, type_: pa.DataType, n: int) -> pa.Array:
    return _arr(np.full(n, value, dtype=type_.to_pandas_dtype()), type_)


def _v4_mapped(v6: np.ndarray) -> np.ndarray:
    """Rows of ``(n, 16)`` address bytes that are IPv4-mapped IPv6 addresses (RFC 4291 2.5.5.2)."""
    words = np.ascontiguousarray(v6).view("<u8").reshape(-1, 2)  # bytes 0-7, 8-15 (little-endian words)
    return (words[:, 0] == 0) & ((words[:, 1] & np.uint64(0xFFFFFFFF)) == np.uint64(0xFFFF0000))


def _low_v4(v6: np.ndarray) -> np.ndarray:
    b = v6[:, 12:16].astype(np.uint32)
    return (b[:, 0] << 24) | (b[:, 1] << 16) | (b[:, 2] << 8) | b[:, 3]


def _v6(raw: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    n = raw.shape[0]
    data = pa.py_buffer(np.ascontiguousarray(raw))
    if valid is None or valid.all():
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, data])
    bitmap = pa.array(valid, pa.bool_()).buffers()[1]
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [bitmap, data], null_count=int(n - valid.sum()))


_STRING_CACHE: dict[str, pa.Array] = {}


def _repeated(value: str, n: int) -> pa.Array:
    """``value`` n times as a string column: a zero-copy slice of a cached column."""
    arr = _STRING_CACHE.get(value)
    if arr is None or len(arr) < n:
        if len(_STRING_CACHE) > 4096:
            _STRING_CACHE.clear()
        size = max(n, 1 << 16)
        raw = value.encode()
        offsets = np.arange(size + 1, dtype=np.int32) * len(raw)
        arr = pa.Array.from_buffers(pa.string(), size, [None, pa.py_buffer(offsets), pa.py_buffer(raw * size)])
        _STRING_CACHE[value] = arr
    return arr.slice(0, n)


def _nulls(type_: pa.DataType, n: int) -> pa.Array:
    key = (str(type_), n)
    arr = _NULL_CACHE.get(key)
    if arr is None:
        if len(_NULL_CACHE) > 256:
            _NULL_CACHE.clear()
        arr = _NULL_CACHE[key] = pa.nulls(n, type=type_)
    return arr


def _v5_icmp_ports(roles: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """NetFlow v5/v7 ICMP records in fprobe's convention (type in the source port, code in the
    destination port) moved to Cisco's (source port 0, destination port type * 256 + code), as
    nfdump reads them. A Cisco record has source port 0, so the two never mix up."""
    proto, sp, dp = roles["protocol"], roles["src_port"], roles["dst_port"]
    fprobe = ((proto == 1) | (proto == 58)) & (sp != 0) & (sp < 256) & (dp < 256)
    if not fprobe.any():
        return roles
    out = dict(roles)
    out["dst_port"] = np.where(fprobe, (sp.astype(np.uint32) << 8) | dp, dp).astype(dp.dtype)
    out["src_port"] = np.where(fprobe, 0, sp).astype(sp.dtype)
    return out


_SWAPS = (
    ("src_v4", "dst_v4"), ("src_v6", "dst_v6"), ("src_port", "dst_port"), ("in_if", "out_if"),
    ("in_phys_if", "out_phys_if"), ("tcp_flags", "rev_tcp_flags"), ("packets", "rev_packets"),
    ("bytes", "rev_bytes"), ("packets_total", "rev_packets_total"), ("bytes_total", "rev_bytes_total"),
)  # fmt: skip


def _orient_biflows(roles: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """RFC 5103 biflows whose reverse side opened the TCP connection are turned round, so that src
    is the initiator: the reverse side sent a SYN without ACK and the forward side did not (a
    connection attempt answered by a RST, or unanswered). softflowd ``-b`` orders the two ends by
    address, not by who opened; where the flags do not tell (an established connection: both
    sides sent SYN and ACK), the record stays as exported."""
    fwd, rev, proto = roles["tcp_flags"], roles["rev_tcp_flags"], roles["protocol"]
    turn = (proto == 6) & ((rev & 0x12) == 0x02) & ((fwd & 0x12) != 0x02)
    if not turn.any():
        return roles
    out = dict(roles)
    for a, b in _SWAPS:
        if a in roles and b in roles and roles[a].shape == roles[b].shape:
            x, y = roles[a], roles[b]
            cond = turn.reshape(-1, *([1] * (x.ndim - 1)))
            out[a], out[b] = np.where(cond, y, x).astype(x.dtype), np.where(cond, x, y).astype(y.dtype)
    return out


def build_batch(roles: dict[str, np.ndarray], n: int, version: int, ctx: Context) -> pa.RecordBatch:
    """One STORE_SCHEMA batch from the role arrays of ``n`` records and their context."""
    cols: dict[str, pa.Array] = {}
    if version in (5, 7):
        roles = _v5_icmp_ports(roles)
    if "rev_tcp_flags" in roles and "tcp_flags" in roles and "protocol" in roles:
        roles = _orient_biflows(roles)
    for which, values in zip(("start", "end"), flow_times(roles, version, ctx), strict=True):
        ms = np.ascontiguousarray(values, dtype=np.int64)
        cols[which] = pa.Array.from_buffers(TYPES[which], n, [None, pa.py_buffer(ms)])

    # Addresses: a template may carry both families (one of them zero); ipVersion decides, else
    # the family whose address is set. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is stored as
    # the IPv4 address, as the CSV reader does, so that a search for the IPv4 address finds it.
    for side in ("src", "dst"):
        v4, v6 = roles.get(f"{side}_v4"), roles.get(f"{side}_v6")
        if v6 is None:
            if v4 is not None:
                cols[f"{side}_addr_v4"] = _col(f"{side}_addr_v4", v4)
            continue
        if v4 is None:
            is6 = np.ones(n, dtype=bool)
            v4 = np.zeros(n, dtype=np.uint32)
        elif "ip_version" in roles:
            is6 = roles["ip_version"] == 6
        else:
            is6 = v6.any(axis=1) & (v4 == 0)
        mapped = is6 & _v4_mapped(v6)
        if mapped.any():
            v4 = np.where(mapped, _low_v4(v6), v4)
            is6 = is6 & ~mapped
        if is6.all():
            cols[f"{side}_addr_v6"] = _v6(v6, None)
        else:
            cols[f"{side}_addr_v4"] = _col(f"{side}_addr_v4", v4, mask=is6 if is6.any() else None)
            if is6.any():
                cols[f"{side}_addr_v6"] = _v6(v6, is6)

    for name, candidates in _INT_COLUMNS:
        for role in candidates:
            if role in roles:
                cols[name] = _col(name, roles[role])
                break

    # ICMP type and code: the dedicated elements, else the v5/v9 convention of type*256+code in
    # the destination port. Null for non-ICMP flows.
    if "protocol" in roles:
        proto = roles["protocol"]
        is_icmp = (proto == 1) | (proto == 58)
        if is_icmp.any():
            typ: np.ndarray | None = None
            code: np.ndarray | None = None
            if "icmp_type_code_v4" in roles or "icmp_type_code_v6" in roles:
                a = roles.get("icmp_type_code_v4")
                b = roles.get("icmp_type_code_v6")
                tc: np.ndarray = b if a is None else a if b is None else np.where(proto == 58, b, a)  # type: ignore[assignment]
                tc = tc.astype(np.uint64)
                typ, code = tc >> U64(8), tc & U64(0xFF)
            elif "icmp_type_v4" in roles or "icmp_type_v6" in roles:
                zero = np.zeros(n, dtype=np.uint64)
                t4, c4 = roles.get("icmp_type_v4", zero), roles.get("icmp_code_v4", zero)
                t6, c6 = roles.get("icmp_type_v6", zero), roles.get("icmp_code_v6", zero)
                has6 = "icmp_type_v6" in roles
                has4 = "icmp_type_v4" in roles
                use6 = (proto == 58) if (has4 and has6) else np.full(n, has6)
                typ, code = np.where(use6, t6, t4), np.where(use6, c6, c4)
            elif "dst_port" in roles:
                dp = roles["dst_port"].astype(np.uint64)
                typ, code = dp >> U64(8), dp & U64(0xFF)
            if typ is not None and code is not None:
                cols["icmp_type"] = _col("icmp_type", typ & U64(0xFF), mask=~is_icmp)
                cols["icmp_code"] = _col("icmp_code", code & U64(0xFF), mask=~is_icmp)

    if isinstance(ctx.sampling, np.ndarray):
        rate = np.where(ctx.sampling == 0, 1, np.minimum(ctx.sampling, 0xFFFFFFFF))
        cols["sampling_rate"] = _col("sampling_rate", rate)
    else:
        cols["sampling_rate"] = _const(min(ctx.sampling, 0xFFFFFFFF) or 1, TYPES["sampling_rate"], n)
    cols["observation_domain"] = _const(ctx.domain, TYPES["observation_domain"], n)
    cols["exporter"] = _repeated(ctx.exporter, n)

    arrays = [cols[f.name] if f.name in cols else _nulls(f.type, n) for f in STORE_SCHEMA]
    return pa.RecordBatch.from_arrays(arrays, schema=STORE_SCHEMA)
