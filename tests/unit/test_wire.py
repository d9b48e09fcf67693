"""faktory_fast.codec.wire: client-command framing and reply serializers, against both implementations;
faktory_fast.codec.net: the PROXY protocol header parser and trusted networks."""
from __future__ import annotations

import ipaddress
import random
import struct

import pytest

from faktory_fast.codec import net
from tests.conftest import implementation


def feed_chunks(parser, data: bytes, sizes) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    pos = 0
    for size in sizes:
        out += parser.feed(data[pos:pos + size])
        pos += size
    out += parser.feed(data[pos:])
    return out


def random_sizes(rng: random.Random, total: int, biggest: int = 17) -> list[int]:
    sizes = []
    while total > 0:
        size = rng.randint(0, biggest)  # 0: empty feeds must be harmless too
        sizes.append(size)
        total -= size
    return sizes


STREAM = (
    b'HELLO {"v":2,"hostname":"h","wid":"w1","pid":1,"labels":["a b"]}\r\n'
    b"FETCH q1 q2\r\n"
    b"ACK\n"                       # LF only
    b"\r\n"                        # empty line, CRLF
    b"\n"                          # empty line, LF
    b"BEAT   {\"wid\":\"x\"}\r\n"  # payload keeps its leading spaces
    b"END\r\n"
    b" lead\n"                     # empty verb
    b"PUSH {\"args\":[\"a\\r\\n\"]}\r\n"
    b"x\ry z\r\r\n"                # inner \r kept, only the final \r\n stripped
    b"push lower\n"                # case kept
)
EXPECTED = [
    (b"HELLO", b'{"v":2,"hostname":"h","wid":"w1","pid":1,"labels":["a b"]}'),
    (b"FETCH", b"q1 q2"),
    (b"ACK", b""),
    (b"", b""),
    (b"", b""),
    (b"BEAT", b'  {"wid":"x"}'),
    (b"END", b""),
    (b"", b"lead"),
    (b"PUSH", b'{"args":["a\\r\\n"]}'),
    (b"x\ry", b"z\r"),
    (b"push", b"lower"),
]


def test_whole_stream(wire_impl) -> None:
    p = wire_impl.CommandFramer()
    assert p.feed(STREAM) == EXPECTED
    assert p.buffered() == 0
    assert p.overflow is False


def test_every_split_point(wire_impl) -> None:
    for i in range(len(STREAM) + 1):
        p = wire_impl.CommandFramer()
        assert p.feed(STREAM[:i]) + p.feed(STREAM[i:]) == EXPECTED, i
        assert p.buffered() == 0


def test_one_byte_at_a_time(wire_impl) -> None:
    p = wire_impl.CommandFramer()
    out = []
    for i in range(len(STREAM)):
        out += p.feed(STREAM[i:i + 1])
    assert out == EXPECTED
    assert p.buffered() == 0


def test_random_chunks(wire_impl) -> None:
    rng = random.Random(1234)
    data = STREAM * 20
    for _ in range(50):
        p = wire_impl.CommandFramer()
        assert feed_chunks(p, data, random_sizes(rng, len(data))) == EXPECTED * 20


def test_cr_at_end_of_chunk(wire_impl) -> None:
    p = wire_impl.CommandFramer()
    assert p.feed(b"ACK {}\r") == []
    assert p.buffered() == 7
    assert p.feed(b"\nFAIL") == [(b"ACK", b"{}")]
    assert p.buffered() == 4
    assert p.feed(b" x\r") == []
    assert p.feed(b"\n") == [(b"FAIL", b"x")]
    assert p.buffered() == 0


def test_partial_line_is_kept(wire_impl) -> None:
    p = wire_impl.CommandFramer()
    assert p.feed(b"FET") == []
    assert p.buffered() == 3
    assert p.feed(b"") == []
    assert p.feed(b"CH default") == []
    assert p.feed(b"\r\nEND\r\n") == [(b"FETCH", b"default"), (b"END", b"")]


def test_bytes_like_input(wire_impl) -> None:
    p = wire_impl.CommandFramer()
    assert p.feed(bytearray(b"A 1\nB")) == [(b"A", b"1")]
    assert p.feed(memoryview(b" 2\n")) == [(b"B", b"2")]


def test_results_are_bytes(wire_impl) -> None:
    p = wire_impl.CommandFramer()
    ((verb, payload),) = p.feed(bytearray(b"PUSH {}\n"))
    assert type(verb) is bytes and type(payload) is bytes


def test_large_line_in_many_chunks_is_linear(wire_impl) -> None:
    # 8 MiB in 64-byte pieces: a quadratic buffer would copy ~0.5 TB and hit the timeout.
    payload = b"x" * (8 << 20)
    data = b"PUSH " + payload + b"\r\n"
    p = wire_impl.CommandFramer()
    out = []
    for i in range(0, len(data), 64):
        out += p.feed(data[i:i + 64])
    assert out == [(b"PUSH", payload)]
    assert p.buffered() == 0


def test_default_max_line(wire_impl) -> None:
    assert wire_impl.CommandFramer().max_line == 16 * 1024 * 1024


def test_line_at_limit_is_accepted(wire_impl) -> None:
    p = wire_impl.CommandFramer(10)
    assert p.feed(b"0123456789\r\n" + b"abcdefghij\n") == [(b"0123456789", b""), (b"abcdefghij", b"")]
    assert not p.overflow


def test_trailing_cr_does_not_count_towards_limit(wire_impl) -> None:
    p = wire_impl.CommandFramer(10)
    assert p.feed(b"0123456789\r") == []
    assert not p.overflow
    assert p.feed(b"\n") == [(b"0123456789", b"")]
    # ...but a \r that turns out to be inside the line does.
    assert p.feed(b"012345678\r") == []
    assert p.feed(b"x") == []
    assert p.overflow


def test_overflow_keeps_earlier_lines(wire_impl) -> None:
    p = wire_impl.CommandFramer(10)
    out = p.feed(b"A 1\r\nB 2\n" + b"C" * 11 + b"\r\nD 4\r\n")
    assert out == [(b"A", b"1"), (b"B", b"2")]
    assert p.overflow is True
    assert p.buffered() == 0
    # The parser is done: later data is ignored, never raised on.
    assert p.feed(b"E 5\r\n") == []
    assert p.overflow is True


def test_overflow_on_incomplete_line(wire_impl) -> None:
    p = wire_impl.CommandFramer(10)
    assert p.feed(b"OK 1\n" + b"x" * 6) == [(b"OK", b"1")]
    assert not p.overflow
    assert p.feed(b"y" * 4) == []
    assert not p.overflow  # exactly 10 bytes held
    assert p.feed(b"z") == []
    assert p.overflow
    assert p.buffered() == 0


def test_overflow_one_byte_at_a_time(wire_impl) -> None:
    data = b"A\n" + b"B" * 11 + b"\n"
    p = wire_impl.CommandFramer(10)
    out = []
    for i in range(len(data)):
        out += p.feed(data[i:i + 1])
    assert out == [(b"A", b"")]
    assert p.overflow


def test_overflow_when_completing_a_buffered_line(wire_impl) -> None:
    p = wire_impl.CommandFramer(10)
    assert p.feed(b"x" * 8) == []
    assert p.feed(b"yyy\nZ\n") == []
    assert p.overflow


def test_same_results_from_both_implementations() -> None:
    compiled, source = implementation("codec.wire", "cython"), implementation("codec.wire", "python")
    rng = random.Random(99)
    alphabet = b"ab \r\n"
    for _ in range(300):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        sizes = random_sizes(rng, len(data), 7)
        limit = rng.randint(0, 8)
        results = []
        for impl in (compiled, source):
            p = impl.CommandFramer(limit)
            results.append((feed_chunks(p, data, sizes), p.overflow, p.buffered()))
        assert results[0] == results[1], (data, sizes, limit)


# -- serializers ----------------------------------------------------------------------------------

def test_constants(wire_impl) -> None:
    assert wire_impl.OK == b"+OK\r\n"
    assert wire_impl.NIL == b"$-1\r\n"


def test_error(wire_impl) -> None:
    assert wire_impl.error("unknown command FOO") == b"-ERR unknown command FOO\r\n"
    assert wire_impl.error(b"bytes msg") == b"-ERR bytes msg\r\n"
    assert wire_impl.error("dup", "NOTUNIQUE") == b"-NOTUNIQUE dup\r\n"
    assert wire_impl.error("dup", b"NOTUNIQUE") == b"-NOTUNIQUE dup\r\n"
    assert wire_impl.error("a\r\nb\nc\rd") == b"-ERR a  b c d\r\n"
    assert wire_impl.error("ünï") == "-ERR ünï\r\n".encode()
    assert wire_impl.error("") == b"-ERR \r\n"


def test_bulk(wire_impl) -> None:
    assert wire_impl.bulk(None) == b"$-1\r\n"
    assert wire_impl.bulk(b"") == b"$0\r\n\r\n"
    assert wire_impl.bulk(b'{"jid":"1"}') == b'$11\r\n{"jid":"1"}\r\n'
    assert wire_impl.bulk(b"a\r\nb") == b"$4\r\na\r\nb\r\n"
    assert wire_impl.bulk("é") == b"$2\r\n\xc3\xa9\r\n"
    assert wire_impl.bulk(bytearray(b"xy")) == b"$2\r\nxy\r\n"
    big = bytes(range(256)) * 4096
    assert wire_impl.bulk(big) == b"$1048576\r\n" + big + b"\r\n"
    assert type(wire_impl.bulk(b"x")) is bytes


# -- the PROXY protocol header (faktory_fast.codec.net) ----------------------------------------------

def v2_header(command: int = 1, fam: int = 0x11, src: str = "203.0.113.7", dst: str = "10.0.0.1",
              sport: int = 50123, dport: int = 7419, tlvs: bytes = b"",
              block: bytes | None = None) -> bytes:
    """A PROXY v2 header as haproxy's send-proxy-v2 writes it."""
    if block is None:
        block = (ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed
                 + struct.pack(">HH", sport, dport)) if fam >> 4 in (1, 2) else b""
    body = block + tlvs
    return net.V2_SIGNATURE + bytes([0x20 | command, fam]) + struct.pack(">H", len(body)) + body


def test_proxy_v1_tcp4_tcp6_unknown() -> None:
    line = b"PROXY TCP4 203.0.113.7 10.0.0.1 50123 7419\r\n"
    assert net.parse_proxy_header(line + b"HELLO {}\r\n") == (len(line), ("203.0.113.7", 50123))
    line6 = b"PROXY TCP6 2001:db8::1 ::1 65535 7419\r\n"
    assert net.parse_proxy_header(line6) == (len(line6), ("2001:db8::1", 65535))
    unknown = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"
    assert net.parse_proxy_header(unknown) == (len(unknown), None)
    assert net.parse_proxy_header(b"PROXY UNKNOWN\r\n") == (15, None)


def test_proxy_v1_incomplete_until_crlf_at_every_split() -> None:
    line = b"PROXY TCP4 203.0.113.7 10.0.0.1 50123 7419\r\n"
    for i in range(len(line)):
        assert net.parse_proxy_header(line[:i]) is None, i
    assert net.parse_proxy_header(line) == (len(line), ("203.0.113.7", 50123))


@pytest.mark.parametrize("data", [
    b"HELLO {}\r\n",                                      # not a header at all
    b"PROXX TCP4",                                        # refused before it is complete
    b"PROXY TCP4 203.0.113.7 10.0.0.1 50123 7419\n",      # LF only
    b"PROXY TCP5 203.0.113.7 10.0.0.1 50123 7419\r\n",    # unknown family
    b"PROXY TCP4 203.0.113.7 10.0.0.1 50123\r\n",         # a field missing
    b"PROXY TCP4  203.0.113.7 10.0.0.1 50123 7419\r\n",   # double space
    b"PROXY TCP4 2001:db8::1 10.0.0.1 50123 7419\r\n",    # IPv6 in TCP4
    b"PROXY TCP6 203.0.113.7 ::1 50123 7419\r\n",         # IPv4 in TCP6
    b"PROXY TCP4 203.0.113.300 10.0.0.1 50123 7419\r\n",  # not an address
    b"PROXY TCP4 203.0.113.7 10.0.0.1 65536 7419\r\n",    # port out of range
    b"PROXY TCP4 203.0.113.7 10.0.0.1 0123 7419\r\n",     # leading zero
    b"PROXY TCP4 203.0.113.7 10.0.0.1 +123 7419\r\n",     # sign
    b"PROXY TCP4 203.0.113.7 10.0.0.1 \xd9\xa1 7419\r\n",  # not ASCII
    b"PROXY " + b"x" * 120,                               # over 107 bytes without CRLF
    b"PROXY UNKNOWN" + b" " * 100 + b"\r\n",              # CRLF past 107 bytes
])
def test_proxy_v1_malformed(data: bytes) -> None:
    with pytest.raises(net.ProxyHeaderError):
        net.parse_proxy_header(data)


def test_proxy_v2_inet_inet6_with_tlvs() -> None:
    tlvs = b"\x04\x00\x03abc" + b"\x20\x00\x05\x01\x00\x00\x00\x00"  # NOOP, SSL
    h = v2_header(tlvs=tlvs)
    assert net.parse_proxy_header(h + b"HELLO {}\r\n") == (len(h), ("203.0.113.7", 50123))
    h6 = v2_header(fam=0x21, src="2001:db8::7", dst="::1", sport=1)
    assert net.parse_proxy_header(h6) == (len(h6), ("2001:db8::7", 1))


def test_proxy_v2_without_a_client_address() -> None:
    local = v2_header(command=0, fam=0x00)  # LOCAL: haproxy's health checks
    assert net.parse_proxy_header(local) == (16, None)
    unspec = v2_header(fam=0x00)
    assert net.parse_proxy_header(unspec) == (16, None)
    unix = v2_header(fam=0x31, block=b"\0" * 216)
    assert net.parse_proxy_header(unix) == (16 + 216, None)
    assert net.parse_proxy_header(v2_header(fam=0x10, block=b"\0" * 12)) == (28, None)


def test_proxy_v2_incomplete_at_every_split() -> None:
    h = v2_header(tlvs=b"\x04\x00\x01z")
    for i in range(len(h)):
        assert net.parse_proxy_header(h[:i]) is None, i


@pytest.mark.parametrize("data", [
    net.V2_SIGNATURE[:11] + b"X" + bytes(4),                    # signature off
    net.V2_SIGNATURE + bytes([0x11, 0x11]) + bytes(2),          # version 1 in the v2 format
    net.V2_SIGNATURE + bytes([0x22, 0x11]) + bytes(2),          # command 2
    v2_header(fam=0x12),                                        # UDP over IPv4
    v2_header(fam=0x41, block=b""),                             # address family 4
    v2_header(fam=0x11, block=b"\0" * 11),                      # address block too short
    v2_header(fam=0x21, block=b"\0" * 35),
])
def test_proxy_v2_malformed(data: bytes) -> None:
    with pytest.raises(net.ProxyHeaderError):
        net.parse_proxy_header(data)


def test_looks_like_proxy_header() -> None:
    assert net.looks_like_proxy_header(b"PROXY TCP4 ")
    assert net.looks_like_proxy_header(v2_header())
    assert net.looks_like_proxy_header(net.V2_SIGNATURE[:5])
    assert not net.looks_like_proxy_header(b'HELLO {"v":2}\r\n')
    assert not net.looks_like_proxy_header(b"\r\n")


def test_trusted_networks() -> None:
    nets = net.parse_networks(net.DEFAULT_PROXY_FROM)
    assert net.trusted(("127.0.0.2", 1), nets) and net.trusted(("::1", 1, 0, 0), nets)
    assert net.trusted(("::ffff:127.0.0.1", 1, 0, 0), nets)  # a dual-stack socket's IPv4 peer
    assert not net.trusted(("10.0.0.1", 1), nets) and not net.trusted(None, nets)
    assert net.parse_networks(["10.1.2.3", " 192.168.0.0/16 "]) == [
        ipaddress.ip_network("10.1.2.3/32"), ipaddress.ip_network("192.168.0.0/16")]
    for bad in ("10.0.0.300", "", "10.0.0.0/33,127.0.0.1", [7]):
        with pytest.raises(ValueError):
            net.parse_networks(bad)  # type: ignore[arg-type]
    assert net.address_text(("::1", 5, 0, 0)) == "[::1]:5"
    assert net.address_text(("1.2.3.4", 5)) == "1.2.3.4:5" and net.address_text(None) == ""
