"""The information elements flowpivot reads from NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) records.

One table maps an element (enterprise number, element id) to the *role* it plays when a flow
record becomes a row of :data:`flowpivot.schema.STORE_SCHEMA`. Every other element is skipped by
its declared length. v9 field types 1-127 share their numbers with the IANA IPFIX registry, so
one table serves both versions; the only element whose meaning differs is 21/22
(v9: ms of router uptime at the header's sysUpTime clock; IPFIX: ms since systemInitTime).
"""

from __future__ import annotations

__all__ = ["ROLES", "REVERSE_PEN", "role_of"]

#: RFC 5103 reverse information elements are enterprise elements of this PEN.
REVERSE_PEN = 29305

#: (enterprise, element id) -> role. Enterprise 0 is the IANA registry.
ROLES: dict[tuple[int, int], str] = {
    (0, 1): "bytes",  # octetDeltaCount / IN_BYTES
    (0, 2): "packets",  # packetDeltaCount / IN_PKTS
    (0, 85): "bytes_total",  # octetTotalCount, used when no delta count is sent
    (0, 86): "packets_total",  # packetTotalCount
    (0, 4): "protocol",
    (0, 6): "tcp_flags",
    (0, 7): "src_port",
    (0, 11): "dst_port",
    (0, 8): "src_v4",
    (0, 12): "dst_v4",
    (0, 27): "src_v6",
    (0, 28): "dst_v6",
    (0, 60): "ip_version",
    (0, 10): "in_if",
    (0, 14): "out_if",
    (0, 252): "in_phys_if",  # ingressPhysicalInterface, used when ingressInterface is absent
    (0, 253): "out_phys_if",
    (0, 16): "src_as",
    (0, 17): "dst_as",
    (0, 61): "direction",
    (0, 32): "icmp_type_code_v4",  # type * 256 + code
    (0, 139): "icmp_type_code_v6",
    (0, 176): "icmp_type_v4",
    (0, 177): "icmp_code_v4",
    (0, 178): "icmp_type_v6",
    (0, 179): "icmp_code_v6",
    (0, 22): "first_uptime",  # v9 FIRST_SWITCHED / IPFIX flowStartSysUpTime
    (0, 21): "last_uptime",
    (0, 150): "start_s",
    (0, 151): "end_s",
    (0, 152): "start_ms",
    (0, 153): "end_ms",
    (0, 154): "start_us",  # dateTimeMicroseconds: NTP 64-bit timestamp
    (0, 155): "end_us",
    (0, 156): "start_ns",
    (0, 157): "end_ns",
    (0, 158): "start_delta_us",  # microseconds before the export time
    (0, 159): "end_delta_us",
    (0, 160): "system_init_ms",
    (0, 322): "observation_s",
    (0, 323): "observation_ms",
    (0, 324): "observation_us",  # observationTimeMicroseconds (PSAMP packet reports), NTP format
    (0, 325): "observation_ns",
    (0, 34): "sampling_interval",  # v9 SAMPLING_INTERVAL, IPFIX samplingInterval
    (0, 50): "sampler_random_interval",  # v9 FLOW_SAMPLER_RANDOM_INTERVAL / IPFIX samplerRandomInterval
    (0, 305): "sampling_packet_interval",
    (0, 306): "sampling_packet_space",
    (0, 309): "sampling_size",  # samplingSize: packets selected per samplingPopulation (RFC 5477)
    (0, 310): "sampling_population",  # samplingPopulation: random n-out-of-N selection's N
    (0, 311): "sampling_probability",  # samplingProbability (float64, or float32 reduced): uniform probabilistic
    (0, 318): "selector_observed",  # selectorIdTotalPktsObserved (RFC 5477): packets the selector saw
    (0, 319): "selector_selected",  # selectorIdTotalPktsSelected: packets it selected
    (0, 48): "sampler_id",  # v9 FLOW_SAMPLER_ID / IPFIX samplerId
    (0, 302): "selector_id",
    (0, 145): "template_id",  # templateId, as an options scope
    (0, 315): "frame_section",  # dataLinkFrameSection: a sampled frame's first bytes (see packets.py)
    (0, 313): "ip_section",  # ipHeaderPacketSection: a sampled packet's first bytes, from the IP header
    (REVERSE_PEN, 1): "rev_bytes",
    (REVERSE_PEN, 2): "rev_packets",
    (REVERSE_PEN, 85): "rev_bytes_total",
    (REVERSE_PEN, 86): "rev_packets_total",
    (REVERSE_PEN, 6): "rev_tcp_flags",
}

#: Roles whose value is a sampled packet header, read by flowpivot.decode.packets.
SECTION_ROLES = frozenset({"frame_section", "ip_section"})

#: Roles whose value is raw bytes (addresses); every other role is an unsigned integer.
BYTES_ROLES = frozenset({"src_v6", "dst_v6"})

#: Roles that describe sampling; an options record carrying one of them feeds the sampling table.
SAMPLING_ROLES = frozenset(
    {
        "sampling_interval", "sampler_random_interval", "sampling_packet_interval", "sampling_population",
        "sampling_probability", "selector_observed",
    }
)  # fmt: skip


def role_of(enterprise: int, element: int) -> str | None:
    return ROLES.get((enterprise, element))
