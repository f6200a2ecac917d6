"""nfdump's filter syntax, parsed with lark (LALR) into the tree of :mod:`flowpivot.query.ast`.

The subset follows nfdump(1), FILTER section: ``and``/``or``/``not``/``( )``, ``any``, ``ipv4``/``inet``,
``ipv6``/``inet6``, ``proto``, ``[src|dst] ip|host ADDR``, ``[src|dst] ip in [LIST]``,
``[src|dst] net NET/BITS`` (also ``10.1/16`` and ``NET MASK``), ``[src|dst] port [COMP] N``,
``[src|dst] port in [LIST]``, ``[src|dst] as [COMP] N``, ``[src|dst] as in [LIST]``, ``flags LETTERS``,
``[in|out] packets|bytes [COMP] N[k|m|g]``, ``router ip ADDR``, ``icmp-type N``, ``icmp-code N``,
``[in|out] if N``, ``duration [COMP] MS``, ``flowdir ingress|egress``. Direction prefixes are
``src``, ``dst``, ``src and dst``, ``src or dst``. Keywords are case insensitive; ``#`` starts a comment.

flowpivot's additions, which nfdump refuses: port and number ranges ``port 6000-6100`` and
``port in [80 8000-8080]``, and ``exporter NAME`` (the record's ``exporter`` text).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from ..errors import FlowpivotError
from .ast import (
    AddrIn,
    And,
    Const,
    Duration,
    Family,
    FlagsAll,
    Node,
    NumCmp,
    NumIn,
    Or,
    StrEq,
    negate,
)

__all__ = ["FilterError", "parse_filter", "AsnResolver", "PROTOCOLS", "FLAG_LETTERS"]


class FilterError(FlowpivotError, ValueError):
    """A filter expression that cannot be used: the message names the column and the reason."""


GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr | or_expr _OR and_expr -> or_
?and_expr: not_expr | and_expr _AND not_expr -> and_
?not_expr: atom | _NOT not_expr -> not_
?atom: "(" or_expr ")" | primitive

primitive: ANY                                  -> any_
    | FAMILY                                    -> family
    | PROTO PROTOVAL                            -> proto
    | [dir] (IP | HOST) ADDR                    -> ip
    | [dir] (IP | HOST) IN addrlist             -> iplist
    | [dir] NET ADDR [ADDR]                     -> net
    | [dir] PORT [COMP] NUMVAL                  -> port
    | [dir] PORT IN numlist                     -> portlist
    | [dir] AS [COMP] NUMVAL                    -> as_
    | [dir] AS IN numlist                       -> aslist
    | FLAGS FLAGVAL                             -> flags
    | [inout] PACKETS [COMP] NUMVAL             -> packets
    | [inout] BYTES [COMP] NUMVAL               -> bytes_
    | ROUTER IP ADDR                            -> router
    | EXPORTER WORD                             -> exporter
    | ICMPTYPE NUMVAL                           -> icmp_type
    | ICMPCODE NUMVAL                           -> icmp_code
    | [inout] IF NUMVAL                         -> iface
    | DURATION [COMP] NUMVAL                    -> duration
    | FLOWDIR DIRVAL                            -> flowdir

dir: SRC | DST | SRC _AND DST -> dir_and | SRC _OR DST -> dir_or
inout: IN | OUT
addrlist: "[" ADDR (","? ADDR)* "]"
numlist: "[" NUMVAL (","? NUMVAL)* "]"

_OR: /or\b/i | "||"
_AND: /and\b/i | "&&"
_NOT: /not\b/i | "!"
ANY: /any\b/i
FAMILY: /(ipv4|inet6|inet|ipv6)\b/i
PROTO: /proto\b/i
IP: /ip\b/i
HOST: /host\b/i
IN: /in\b/i
OUT: /out\b/i
NET: /net\b/i
PORT: /port\b/i
AS: /as\b/i
FLAGS: /flags\b/i
PACKETS: /packets\b/i
BYTES: /bytes\b/i
ROUTER: /router\b/i
EXPORTER: /exporter\b/i
ICMPTYPE: /icmp-type\b/i
ICMPCODE: /icmp-code\b/i
IF: /if\b/i
DURATION: /duration\b/i
FLOWDIR: /(flowdir|dir)\b/i
SRC: /src\b/i
DST: /dst\b/i
COMP: /(==|=|>=|<=|>|<)/ | /(eq|lt|gt|le|ge)\b/i
ADDR: /([0-9][0-9A-Fa-f:.]*|:[0-9A-Fa-f:.]*|[0-9A-Fa-f]{1,4}:[0-9A-Fa-f:.]*)(\/[0-9]+)?/
NUMVAL: /[0-9]+(-[0-9]+)?[kKmMgGtT]?/
PROTOVAL: /[A-Za-z0-9-]+/
FLAGVAL: /[A-Za-z]+/
DIRVAL: /[A-Za-z0-9]+/
WORD: /"[^"]*"/ | /[^\s()"]+/

COMMENT: /#[^\n]*/
%import common.WS
%ignore WS
%ignore COMMENT
"""

_PARSER = Lark(GRAMMAR, parser="lalr", lexer="contextual", propagate_positions=True, maybe_placeholders=True)

#: nfdump's protocol names (the common ones; any number 0..255 is accepted too)
PROTOCOLS = {
    "icmp": 1, "igmp": 2, "ggp": 3, "ipip": 4, "st": 5, "tcp": 6, "cbt": 7, "egp": 8, "igp": 9,
    "udp": 17, "rdp": 27, "ipv6": 41, "rsvp": 46, "gre": 47, "esp": 50, "ah": 51, "icmp6": 58,
    "ipv6-icmp": 58, "eigrp": 88, "ospf": 89, "pim": 103, "vrrp": 112, "l2tp": 115, "sctp": 132,
}  # fmt: skip

#: nfdump's flag letters and their bits (U A P R S F; X = all of them)
FLAG_LETTERS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "X": 0x3F}

_OPS = {"=": "=", "==": "=", "eq": "=", ">": ">", "gt": ">", "<": "<", "lt": "<", ">=": ">=", "ge": ">=",
        "<=": "<=", "le": "<="}  # fmt: skip
_SCALE = {"k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}
_U16, _U32, _U64 = 0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF

#: ``as`` with an ASN database: given an ASN predicate, the address ranges it covers, as
#: ``(version, first, last)``. Without one, ``as`` compares the record's own AS fields.
AsnResolver = Callable[[Callable[[int], bool]], list[tuple[int, int, int]]]


def _err(tok: Token | None, message: str) -> FilterError:
    where = f"column {tok.column}" if tok is not None and tok.column is not None else "filter"
    return FilterError(f"{where}: {message}")


def _network(tok: Token, mask: Token | None = None) -> tuple[int, int, int]:
    """One address or network -> (version, first, last). ``10.1/16`` is nfdump's short form of 10.1.0.0/16."""
    text = str(tok)
    if "/" in text and ":" not in text:
        addr, bits = text.split("/", 1)
        parts = addr.split(".")
        if 1 <= len(parts) < 4 and all(parts):
            text = ".".join(parts + ["0"] * (4 - len(parts))) + "/" + bits
    if mask is not None:
        if "/" in text:
            raise _err(mask, "give a netmask or /bits, not both")
        text = f"{text}/{mask}"
    addr, _, bits = text.partition("/")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise _err(tok, f"{addr!r} is not an IP address (host names are not resolved)") from None
    if bits and (not bits.isdigit() or int(bits) > ip.max_prefixlen):
        raise _err(tok, f"/{bits} is not a prefix length for {addr} (0..{ip.max_prefixlen})")
    net = ipaddress.ip_network(f"{ip}/{bits or ip.max_prefixlen}", strict=False)
    return net.version, int(net.network_address), int(net.broadcast_address)


def _number(tok: Token, limit: int, what: str) -> tuple[int, int]:
    """``N``, ``Nk``/``Nm``/``Ng`` (x1000) or ``LO-HI`` -> a closed range, checked against 0..limit."""
    text = str(tok)
    scale = 1
    if text[-1].lower() in _SCALE:
        scale, text = _SCALE[text[-1].lower()], text[:-1]
    lo_s, _, hi_s = text.partition("-")
    lo, hi = int(lo_s) * scale, int(hi_s or lo_s) * scale
    if lo > hi:
        raise _err(tok, f"range {tok} runs backwards")
    if hi > limit:
        raise _err(tok, f"{what} {hi} is outside 0..{limit}")
    return lo, hi


def _single(tok: Token, limit: int, what: str) -> int:
    lo, hi = _number(tok, limit, what)
    if lo != hi:
        raise _err(tok, f"a range such as {tok} is allowed with = only")
    return lo


def _sides(d: Any, src: str, dst: str) -> tuple[tuple[str, ...], bool]:
    if d is None:
        return (src, dst), False
    if isinstance(d, Tree):
        return (src, dst), d.data == "dir_and"
    return ((src,) if str(d).lower() == "src" else (dst,)), False


def _cmp(sides: tuple[str, ...], every: bool, comp: Token | None, val: Token, limit: int, what: str) -> Node:
    op = _OPS[str(comp).lower()] if comp is not None else "="
    lo, hi = _number(val, limit, what)
    if lo != hi:
        if op != "=":
            raise _err(val, f"a range such as {val} is allowed with = only")
        return NumIn(sides, ((lo, hi),), every)
    return NumCmp(sides, op, lo, every)


@v_args(inline=True)
class _ToAst(Transformer[Token, Node]):
    def __init__(self, asn: AsnResolver | None):
        super().__init__()
        self.asn = asn

    # --- logic
    def or_(self, a: Node, b: Node) -> Node:
        return Or((*a.items, b) if isinstance(a, Or) else (a, b))

    def and_(self, a: Node, b: Node) -> Node:
        return And((*a.items, b) if isinstance(a, And) else (a, b))

    def not_(self, a: Node) -> Node:
        return negate(a)

    def primitive(self, *args: Any) -> Node:  # pragma: no cover - every alternative is aliased
        raise AssertionError(args)

    # --- direction
    def dir(self, tok: Token) -> Token:
        return tok

    def dir_and(self, *_: Token) -> Tree[Token]:
        return Tree("dir_and", [])

    def dir_or(self, *_: Token) -> Tree[Token]:
        return Tree("dir_or", [])

    def inout(self, tok: Token) -> str:
        return str(tok).lower()

    def addrlist(self, *toks: Token) -> tuple[Token, ...]:
        return toks

    def numlist(self, *toks: Token) -> tuple[Token, ...]:
        return toks

    # --- primitives
    def any_(self, _tok: Token) -> Node:
        return Const(True)

    def family(self, tok: Token) -> Node:
        return Family(4 if str(tok).lower() in ("ipv4", "inet") else 6)

    def proto(self, _kw: Token, val: Token) -> Node:
        text = str(val).lower()
        if text.isdigit():
            n = int(text)
            if n > 255:
                raise _err(val, f"protocol number {n} is outside 0..255")
        elif text in PROTOCOLS:
            n = PROTOCOLS[text]
        else:
            raise _err(val, f"unknown protocol {str(val)!r} (give a number or one of {', '.join(sorted(PROTOCOLS))})")
        return NumCmp(("protocol",), "=", n)

    def ip(self, d: Any, _kw: Token, addr: Token) -> Node:
        sides, every = _sides(d, "src_addr", "dst_addr")
        return AddrIn(sides, (_network(addr),), every)

    def iplist(self, d: Any, _kw: Token, _in: Token, addrs: tuple[Token, ...]) -> Node:
        sides, every = _sides(d, "src_addr", "dst_addr")
        return AddrIn(sides, tuple(_network(a) for a in addrs), every)

    def net(self, d: Any, _kw: Token, addr: Token, mask: Token | None) -> Node:
        sides, every = _sides(d, "src_addr", "dst_addr")
        if mask is None and "/" not in str(addr):
            raise _err(addr, f"net needs /bits or a netmask: {addr}/24 or {addr} 255.255.255.0")
        if mask is not None:
            try:
                m = ipaddress.ip_address(str(mask))
                bits = ipaddress.ip_network(f"0.0.0.0/{m}" if m.version == 4 else f"::/{m}").prefixlen
            except ValueError:
                raise _err(mask, f"{mask} is not a netmask") from None
            return AddrIn(sides, (_network(addr, Token("ADDR", str(bits))),), every)
        return AddrIn(sides, (_network(addr),), every)

    def port(self, d: Any, _kw: Token, comp: Token | None, val: Token) -> Node:
        sides, every = _sides(d, "src_port", "dst_port")
        return _cmp(sides, every, comp, val, _U16, "port")

    def portlist(self, d: Any, _kw: Token, _in: Token, vals: tuple[Token, ...]) -> Node:
        sides, every = _sides(d, "src_port", "dst_port")
        return NumIn(sides, tuple(_number(v, _U16, "port") for v in vals), every)

    def as_(self, d: Any, kw: Token, comp: Token | None, val: Token) -> Node:
        node = _cmp(("x",), False, comp, val, _U32, "AS number")
        if isinstance(node, NumCmp):
            op, v = node.op, node.value
            test = _PY_OPS[op]
            return self._as(d, kw, lambda a: test(a, v), node)
        ((lo, hi),) = node.ranges  # type: ignore[attr-defined]
        return self._as(d, kw, lambda a: lo <= a <= hi, node)

    def aslist(self, d: Any, kw: Token, _in: Token, vals: tuple[Token, ...]) -> Node:
        ranges = tuple(_number(v, _U32, "AS number") for v in vals)
        return self._as(d, kw, lambda a: any(lo <= a <= hi for lo, hi in ranges), NumIn(("x",), ranges))

    def _as(self, d: Any, kw: Token, test: Callable[[int], bool], node: Node) -> Node:
        if self.asn is not None:
            sides, every = _sides(d, "src_addr", "dst_addr")
            ranges = self.asn(test)
            if not ranges:
                return Const(False)
            if len(ranges) > MAX_AS_RANGES:
                raise _err(kw, f"the AS condition covers {len(ranges):,} address ranges (at most {MAX_AS_RANGES:,})")
            return AddrIn(sides, tuple(ranges), every)
        sides, every = _sides(d, "src_as", "dst_as")
        if isinstance(node, NumCmp):
            return NumCmp(sides, node.op, node.value, every)
        assert isinstance(node, NumIn)
        return NumIn(sides, node.ranges, every)

    def flags(self, _kw: Token, val: Token) -> Node:
        mask = 0
        for ch in str(val).upper():
            if ch not in FLAG_LETTERS:
                raise _err(val, f"unknown TCP flag {ch!r} in {val} (letters: U A P R S F, X for all)")
            mask |= FLAG_LETTERS[ch]
        return FlagsAll(mask)

    def packets(self, io: str | None, _kw: Token, comp: Token | None, val: Token) -> Node:
        return _cmp(("rev_packets" if io == "out" else "packets",), False, comp, val, _U64, "packets")

    def bytes_(self, io: str | None, _kw: Token, comp: Token | None, val: Token) -> Node:
        return _cmp(("rev_bytes" if io == "out" else "bytes",), False, comp, val, _U64, "bytes")

    def router(self, _kw: Token, _ip: Token, addr: Token) -> Node:
        _, first, last = _network(addr)
        if first != last:
            raise _err(addr, "router ip takes one address")
        return StrEq("exporter", (str(ipaddress.ip_address(str(addr))),))

    def exporter(self, _kw: Token, val: Token) -> Node:
        text = str(val)
        return StrEq("exporter", (text[1:-1] if text.startswith('"') else text,))

    def icmp_type(self, _kw: Token, val: Token) -> Node:
        return And(
            (NumIn(("protocol",), ((1, 1), (58, 58))), NumCmp(("icmp_type",), "=", _single(val, 255, "ICMP type")))
        )

    def icmp_code(self, _kw: Token, val: Token) -> Node:
        return And(
            (NumIn(("protocol",), ((1, 1), (58, 58))), NumCmp(("icmp_code",), "=", _single(val, 255, "ICMP code")))
        )

    def iface(self, io: str | None, _kw: Token, val: Token) -> Node:
        sides = ("in_if",) if io == "in" else ("out_if",) if io == "out" else ("in_if", "out_if")
        return NumCmp(sides, "=", _single(val, _U32, "interface"))

    def duration(self, _kw: Token, comp: Token | None, val: Token) -> Node:
        op = _OPS[str(comp).lower()] if comp is not None else "="
        return Duration(op, _single(val, _U64, "duration"))

    def flowdir(self, _kw: Token, val: Token) -> Node:
        v = {"ingress": 0, "0": 0, "egress": 1, "1": 1}.get(str(val).lower())
        if v is None:
            raise _err(val, f"flowdir is ingress, egress, 0 or 1, not {val}")
        return NumCmp(("direction",), "=", v)


_PY_OPS: dict[str, Callable[[int, int], bool]] = {
    "=": lambda a, b: a == b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}
MAX_AS_RANGES = 20_000


_WHAT = {
    "ADDR": "an IP address or network", "NUMVAL": "a number", "PROTOVAL": "a protocol", "FLAGVAL": "flag letters",
    "DIRVAL": "ingress or egress", "WORD": "a name", "COMP": "a comparison", "LPAR": "(", "RPAR": ")",
    "LSQB": "[", "RSQB": "]", "COMMA": ",", "_AND": "and", "_OR": "or", "_NOT": "not",
}  # fmt: skip


def _expected(names: Iterable[str] | None) -> str:
    if not names:
        return ""
    words = sorted(
        {_WHAT.get(n, n.lower().replace("icmptype", "icmp-type").replace("icmpcode", "icmp-code")) for n in names}
    )
    if len(words) > 12:
        return " (expected a filter primitive such as ip, net, port, proto, flags, packets, bytes, as)"
    return f" (expected {', '.join(words)})"


def parse_filter(expr: str, asn: AsnResolver | None = None) -> Node:
    """Parse an nfdump filter expression. Raises :class:`FilterError` naming the column of the fault."""
    if not expr.strip() or not expr.split("#", 1)[0].strip():
        return Const(True)
    try:
        tree = _PARSER.parse(expr)
        node = _ToAst(asn).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, FilterError):
            raise e.orig_exc from None
        raise
    except UnexpectedEOF:
        raise FilterError(f"column {len(expr) + 1}: the filter ends too early") from None
    except UnexpectedCharacters as e:
        rest = expr[e.pos_in_stream :]
        word = (rest.split() or [rest[:1]])[0]
        raise FilterError(f"column {e.column}: unexpected {word!r}{_expected(e.allowed)}") from None
    except UnexpectedToken as e:
        if e.token.type == "$END":
            raise FilterError(f"column {len(expr) + 1}: the filter ends too early{_expected(e.expected)}") from None
        raise FilterError(f"column {e.column}: unexpected {str(e.token)!r}{_expected(e.expected)}") from None
    except UnexpectedInput as e:  # pragma: no cover - the three above are all lark raises
        raise FilterError(f"column {getattr(e, 'column', '?')}: {e}") from None
    assert isinstance(node, Node)
    return node
