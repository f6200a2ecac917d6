"""Session evidence from TCP flags, volumes and Zeek's conn_state, as SQL fragments.

The rules and the reasons behind them are in docs/hunt.md ("Sessions"). In short:

* A flow record carries the OR of the flags of the packets it saw. Under 1:N packet sampling a
  long session usually shows only a few mid-session packets (ACK, often PSH), never its SYN, so
  payload evidence must not depend on seeing the handshake.
* No TCP segment without payload is longer than an IPv4 header (20) plus the longest TCP header
  (60): 80 bytes (100 over IPv6). A record averaging more bytes per packet than that carried
  payload, whatever was sampled.
* SYN without ACK in a record means that side opened (or tried to open) the connection: a
  responder's record always carries ACK (SYN-ACK, then ACKs).
* An RST-only answer (RST, maybe ACK, no SYN/PSH/FIN, no payload) to a SYN is a rejection.
"""

from __future__ import annotations

__all__ = [
    "BARE_SEGMENT_MAX_V4",
    "BARE_SEGMENT_MAX_V6",
    "ZEEK_ESTABLISHED",
    "ZEEK_ATTEMPT",
    "established_sql",
    "flow_init_sql",
    "pair_initiator_sql",
    "rst_answer_sql",
    "syn_only_sql",
    "zeek_attempt_sql",
    "zeek_established_sql",
]

FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16

#: IPv4 header (20) + longest TCP header (20 + 40 option bytes): a segment without payload.
BARE_SEGMENT_MAX_V4 = 80
#: IPv6 header (40) + longest TCP header (60).
BARE_SEGMENT_MAX_V6 = 100

#: Zeek states in which the three-way handshake completed (SYN, SYN-ACK and ACK were seen).
ZEEK_ESTABLISHED = ("SF", "S1", "S2", "S3", "RSTO", "RSTR")
#: Zeek states of a connection attempt that never completed (REJ is counted apart as rejected).
ZEEK_ATTEMPT = ("S0", "SH", "SHR", "RSTOS0", "RSTRH")

#: A side is the initiator for a pair when it holds at least this share of the port-decided flows.
INITIATOR_MAJORITY = 0.9


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def syn_only_sql(flags: str) -> str:
    return f"(({flags} & {SYN}) != 0 AND ({flags} & {ACK}) = 0)"


def _bare(v4_col: str = "peer_v4") -> str:
    return f"(CASE WHEN {v4_col} IS NOT NULL THEN {BARE_SEGMENT_MAX_V4} ELSE {BARE_SEGMENT_MAX_V6} END)"


def rst_answer_sql(side: str) -> str:
    """The side's record is an RST answer: RST, no SYN/PSH/FIN, and no payload by size."""
    f, pk, by = f"{side}_fl", f"{side}_pk", f"{side}_by"
    return f"({pk} > 0 AND ({f} & {RST}) != 0 AND ({f} & {FIN | SYN | PSH}) = 0 AND {by} <= {pk} * {_bare()})"


def zeek_established_sql() -> str:
    # OTH is a connection picked up mid-stream: established when Zeek saw data (D/d) in it.
    # Only TCP: Zeek writes SF for a UDP exchange both ways (an NTP or DNS answer), which is no
    # session anyone opened (docs/hunt.md, "Sessions").
    return f"(proto = 6 AND (zs IN {_in(ZEEK_ESTABLISHED)} OR (zs = 'OTH' AND lower(coalesce(hist, '')) LIKE '%d%')))"


def zeek_attempt_sql() -> str:
    return f"(zs IN {_in(ZEEK_ATTEMPT)} OR (zs = 'OTH' AND NOT lower(coalesce(hist, '')) LIKE '%d%'))"


def flow_init_sql() -> str:
    """Per flow, who opened it: 'a' (anchor), 'p' (peer) or NULL when nothing tells.

    Zeek's originator is the initiator. Otherwise a SYN without ACK on one side says it; otherwise
    the service is the lower port and the client is the side on the higher (ephemeral) port.
    """
    ported = "proto IN (6, 17, 132)"
    return (
        "CASE WHEN zs IS NOT NULL THEN CASE WHEN a_src THEN 'a' ELSE 'p' END"
        f" WHEN proto = 6 AND {syn_only_sql('a_fl')} AND NOT {syn_only_sql('p_fl')} THEN 'a'"
        f" WHEN proto = 6 AND {syn_only_sql('p_fl')} AND NOT {syn_only_sql('a_fl')} THEN 'p'"
        f" WHEN {ported} AND a_port > p_port THEN 'a'"
        f" WHEN {ported} AND p_port > a_port THEN 'p' END"
    )


def established_sql() -> str:
    """Pair-level: Zeek says so, or ACK was seen with evidence of payload or of traffic both ways."""
    flags = "(nf_a_flags | nf_p_flags)"
    rst_only_a = f"((nf_a_flags & {RST}) != 0 AND (nf_a_flags & {FIN | SYN | PSH}) = 0)"
    rst_only_p = f"((nf_p_flags & {RST}) != 0 AND (nf_p_flags & {FIN | SYN | PSH}) = 0)"
    both_ways = f"((nf_a_flags & {ACK}) != 0 AND (nf_p_flags & {ACK}) != 0 AND NOT {rst_only_a} AND NOT {rst_only_p})"
    payload = f"(({flags} & {PSH}) != 0 OR nf_max_bpp > {_bare()})"
    return f"(z_est > 0 OR (({flags} & {ACK}) != 0 AND ({payload} OR {both_ways})))"


def pair_initiator_sql() -> str:
    """Pair-level: 'anchor', 'peer', 'mixed' or 'unknown'.

    SYN-without-ACK (and Zeek originator) evidence wins; else the side holding at least
    INITIATOR_MAJORITY of the port-decided flows; else 'mixed'.
    """
    m = INITIATOR_MAJORITY
    return (
        "CASE WHEN a_syn > 0 AND p_syn = 0 THEN 'anchor'"
        " WHEN p_syn > 0 AND a_syn = 0 THEN 'peer'"
        " WHEN a_syn > 0 AND p_syn > 0 THEN 'mixed'"
        " WHEN a_init + p_init = 0 THEN 'unknown'"
        f" WHEN a_init >= {m} * (a_init + p_init) THEN 'anchor'"
        f" WHEN p_init >= {m} * (a_init + p_init) THEN 'peer'"
        " ELSE 'mixed' END"
    )
