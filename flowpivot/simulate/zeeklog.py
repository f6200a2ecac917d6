"""Zeek conn.log files (ASCII TSV with its ``#`` header, or JSON lines) of unsampled true sessions.

A sensor sees every packet, so a session is one connection: ``orig`` is the initiator ``a``, ``resp``
the responder ``b``. ``orig_pkts``/``orig_ip_bytes`` count every packet and its IP bytes, as
``traffic.to_flows`` does at 1:1; ``orig_bytes`` is the payload: data packets' size less the IP and
TCP headers (52 bytes, timestamps option included, as ``traffic.SIZE`` assumes) or IP and UDP (28).

``history`` has one letter per packet class seen, in the order a connection shows them: S h A D a d
F f R r (SYN, SYN-ACK, pure ACK, data, FIN, RST; upper case from the originator). ``conn_state`` is
Zeek's ``conn_state()`` (base/protocols/conn/main.zeek) applied to the endpoint states those classes
leave: SF, S0, S1, S2, S3, SH, SHR, REJ, RSTO, RSTR, RSTOS0, RSTRH or OTH for TCP; for UDP, SF when
both sides sent, S0 when only the originator did. As Zeek does, duration and the payload byte counts
are unset ("-") for a connection of one packet. Lines are in the order Zeek writes them (connection
end, ts + duration); a session's ``uid`` is derived from ``start_uid`` plus its row in the table.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import traffic as T

__all__ = ["write_conn_log", "FIELDS", "TYPES", "uids"]

FIELDS = (
    "ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service", "duration",
    "orig_bytes", "resp_bytes", "conn_state", "local_orig", "local_resp", "missed_bytes", "history",
    "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes", "tunnel_parents",
)  # fmt: skip
TYPES = (
    "time", "string", "addr", "port", "addr", "port", "enum", "string", "interval", "count", "count", "string",
    "bool", "bool", "count", "string", "count", "count", "count", "count", "set[string]",
)  # fmt: skip
_NUMERIC = {"time", "port", "interval", "count"}
_LETTERS = (("syn", "S", "h"), ("ack", "A", "a"), ("data", "D", "d"), ("fin", "F", "f"), ("rst", "R", "r"))
_HISTORY_ORDER = "ShADadFfRr"
_B62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)
_CHUNK = 1 << 18


def uids(ix: np.ndarray) -> list[str]:
    """Zeek-looking connection uids ("C" and 16 base62 digits), distinct for distinct non-negative ``ix``."""
    x = np.asarray(ix, np.uint64)
    out = np.empty((len(x), 17), np.uint8)
    out[:, 0] = ord("C")
    with np.errstate(over="ignore"):
        for half, salt in ((slice(1, 12), 0), (slice(12, 17), 0x9E3779B97F4A7C15)):
            z = x + np.uint64(salt)  # splitmix64: a bijection of 64-bit values
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
            for j in range(half.start, half.stop):  # 11 digits hold all of 64 bits
                out[:, j] = _B62[(z % np.uint64(62)).astype(np.intp)]
                z = z // np.uint64(62)
    return out.view("S17").ravel().astype(str).tolist()


def _packets(s: T.Sessions, d: int) -> np.ndarray:
    return np.asarray(np.sum([s[f"{c}{d}"] for c in T.CLASSES], axis=0, dtype=np.int64))


def _states(s: T.Sessions) -> tuple[np.ndarray, np.ndarray]:
    """(conn_state, history) of every session, as Zeek derives them from the packets it saw."""
    tcp = s["proto"] == 6
    pk = [_packets(s, d) for d in (0, 1)]
    o_syn, r_syn = s["syn0"] > 0, s["syn1"] > 0
    # endpoint states, as Zeek's TCP analyzer leaves them (reset wins over closed over the rest)
    o_reset, r_reset = s["rst0"] > 0, s["rst1"] > 0
    o_closed, r_closed = ~o_reset & (s["fin0"] > 0), ~r_reset & (s["fin1"] > 0)
    o_inactive, r_inactive = ~o_syn, ~r_syn  # TCP_INACTIVE or TCP_PARTIAL: no SYN seen
    # the originator is established once it acknowledges the SYN-ACK, until then SYN_SENT
    answered = o_syn & r_syn & (s["ack0"] + s["data0"] > 0)
    o_syn_sent = o_syn & ~answered & ~o_reset & ~o_closed
    o_est = answered & ~o_reset & ~o_closed
    r_est = r_syn & ~r_reset & ~r_closed
    no_payload = (s["data0"] == 0) & (s["data1"] == 0)
    rstos0 = o_syn & (s["ack0"] == 0) & (s["fin0"] == 0)  # history ^S[^HAFGIQ]*R
    tcp_state = np.select(
        [
            r_reset & (o_syn_sent | (o_reset & no_payload)),
            r_reset & o_inactive,
            r_reset,
            o_reset & r_inactive & rstos0,
            o_reset & r_inactive,
            o_reset,
            o_closed & r_closed,
            o_closed & r_inactive,
            o_closed,
            r_closed & o_inactive,
            r_closed,
            o_syn_sent & (pk[1] == 0),
            o_est & r_est,
        ],
        ["REJ", "RSTRH", "RSTR", "RSTOS0", "OTH", "RSTO", "SF", "SH", "S2", "SHR", "S3", "S0", "S1"],
        "OTH",
    )
    udp_state = np.select(
        [(pk[0] > 0) & (pk[1] > 0), pk[0] > 0, pk[1] > 0], ["SF", "S0", "SHR"], "OTH"
    )  # fmt: skip
    state = np.where(tcp, tcp_state, np.where(s["proto"] == 17, udp_state, "OTH"))
    letter = {}
    for c, up, low in _LETTERS:
        letter[up] = s[f"{c}0"] > 0
        letter[low] = s[f"{c}1"] > 0
    udp_like = ~tcp  # no TCP classes: a packet of either side is payload
    letter["D"] = np.where(udp_like, pk[0] > 0, letter["D"])
    letter["d"] = np.where(udp_like, pk[1] > 0, letter["d"])
    parts = [pa.array(np.where(letter[ch], ch, "")) for ch in _HISTORY_ORDER]
    history = pc.binary_join_element_wise(*parts, "").to_numpy(zero_copy_only=False)
    return state, history


def _decimal(ms: np.ndarray) -> pa.Array:
    """Milliseconds as Zeek writes times and intervals: seconds with six decimals."""
    ms = np.asarray(ms, np.int64)
    sec = pa.array(ms // 1000).cast(pa.string())
    frac = pc.utf8_lpad(pa.array(ms % 1000).cast(pa.string()), 3, "0")
    return pc.binary_join_element_wise(sec, ".", frac, "000", "")  # type: ignore[no-any-return]


def _columns(s: T.Sessions, text: Callable[[np.ndarray], list[str]], uid: list[str]) -> dict[str, pa.Array]:
    """The conn.log columns as strings, null where Zeek leaves a field unset."""
    n = len(s["t0"])
    ids, inv = np.unique(np.concatenate([s["a"], s["b"]]), return_inverse=True)
    names = np.asarray(text(ids), dtype=object)[inv]
    hdr = np.where(s["v6"], 20, 0)
    pk, ip_bytes, payload = [], [], []
    for d in (0, 1):
        pk.append(_packets(s, d))
        ip = s[f"data{d}"] * (s[f"dsz{d}"] + hdr)
        for c, size in T.SIZE.items():
            ip = ip + s[f"{c}{d}"] * (size + hdr)
        ip_bytes.append(np.rint(ip).astype(np.int64))
        l4 = np.where(s["proto"] == 6, 52, np.where(s["proto"] == 17, 28, 20))
        payload.append(np.rint(s[f"data{d}"] * np.maximum(s[f"dsz{d}"] - l4, 0)).astype(np.int64))
    timed = (pk[0] + pk[1] > 1) & (s["dur"] > 0)  # Zeek: duration and sizes only if duration > 0
    unset = pa.array(~timed)
    state, history = _states(s)
    proto = np.select(
        [s["proto"] == 6, s["proto"] == 17, np.isin(s["proto"], (1, 58))], ["tcp", "udp", "icmp"], "unknown_transport"
    )
    none = pa.nulls(n, pa.string())

    def num(v: np.ndarray) -> pa.Array:
        return pa.array(np.asarray(v, np.int64)).cast(pa.string())

    def when_timed(v: pa.Array) -> pa.Array:
        return pc.if_else(unset, pa.scalar(None, pa.string()), v)

    return {
        "ts": _decimal(s["t0"]),
        "uid": pa.array(uid, pa.string()),
        "id.orig_h": pa.array(names[:n], pa.string()),
        "id.orig_p": num(s["sport"]),
        "id.resp_h": pa.array(names[n:], pa.string()),
        "id.resp_p": num(s["dport"]),
        "proto": pa.array(proto, pa.string()),
        "service": none,
        "duration": when_timed(_decimal(s["dur"])),
        "orig_bytes": when_timed(num(payload[0])),
        "resp_bytes": when_timed(num(payload[1])),
        "conn_state": pa.array(state, pa.string()),
        "local_orig": none,  # unset: the sensor knows no Site::local_nets
        "local_resp": none,
        "missed_bytes": num(np.zeros(n, np.int64)),
        "history": pc.if_else(pc.equal(pa.array(history, pa.string()), ""), pa.scalar(None, pa.string()), history),
        "orig_pkts": num(pk[0]),
        "orig_ip_bytes": num(ip_bytes[0]),
        "resp_pkts": num(pk[1]),
        "resp_ip_bytes": num(ip_bytes[1]),
        "tunnel_parents": none,
    }


def _lines(cols: dict[str, pa.Array], fmt: str) -> pa.Array:
    """One conn.log line per row (without its newline)."""
    if fmt == "tsv":
        return pc.binary_join_element_wise(*(pc.fill_null(cols[k], "-") for k in FIELDS), "\t")  # type: ignore[no-any-return]
    pieces = []
    for k, typ in zip(FIELDS, TYPES, strict=True):
        v = cols[k] if typ in _NUMERIC else pc.binary_join_element_wise('"', cols[k], '"', "")
        pieces.append(pc.binary_join_element_wise(f'"{k}":', v, ""))  # null stays null: the key is left out
    body = pc.binary_join_element_wise(*pieces, pa.scalar(","), null_handling="skip")
    return pc.binary_join_element_wise("{", body, "}", "")  # type: ignore[no-any-return]


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d-%H-%M-%S")


def write_conn_log(
    sessions: T.Sessions,
    text: Callable[[np.ndarray], list[str]],
    path: Path,
    *,
    fmt: str = "tsv",
    start_uid: int = 0,
) -> int:
    """Write the conn.log of unsampled ``sessions`` to ``path`` (gzipped if it ends in .gz).

    ``text`` turns address ids into their text (``AddressBook.text``); ``fmt`` is ``"tsv"`` (Zeek's
    ASCII writer) or ``"json"`` (JSON lines). Returns the number of connection lines written
    (header lines are not counted).
    """
    if fmt not in ("tsv", "json"):
        raise ValueError(f"unknown Zeek log format {fmt!r}; use 'tsv' or 'json'")
    path = Path(path)
    n = len(sessions["t0"])
    timed = (_packets(sessions, 0) + _packets(sessions, 1) > 1) & (sessions["dur"] > 0)
    end = sessions["t0"] + np.where(timed, sessions["dur"], 0)  # as the log shows it: ts + duration
    order = np.argsort(end, kind="stable")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        if fmt == "tsv":
            opened = _stamp(int(sessions["t0"].min())) if n else _stamp(0)
            head = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-"]
            head += ["#path\tconn", f"#open\t{opened}", "#fields\t" + "\t".join(FIELDS), "#types\t" + "\t".join(TYPES)]
            fh.write(("\n".join(head) + "\n").encode())
        for lo in range(0, n, _CHUNK):
            ix = order[lo : lo + _CHUNK]
            part = {k: v[ix] for k, v in sessions.items()}
            cols = _columns(part, text, uids(start_uid + ix))
            lines = _lines(cols, fmt)
            joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines), "\n")
            fh.write(joined[0].as_py().encode() + b"\n")
        if fmt == "tsv":
            fh.write(f"#close\t{_stamp(int(end.max()) if n else 0)}\n".encode())
    return n
