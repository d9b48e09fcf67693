"""faktory_fast.wire: client-command framing and reply serializers, against both implementations."""
from __future__ import annotations

import random
from types import ModuleType

import pytest

from faktory_fast import wire, wire_py

IMPLS = [
    pytest.param(
        wire.cython_impl, id="cython",
        marks=pytest.mark.skipif(
            wire.cython_impl is None,
            reason="faktory_fast._wire not built (make build) or FAKTORY_FAST_PURE set"),
    ),
    pytest.param(wire.python_impl, id="python"),
]


@pytest.fixture(params=IMPLS)
def w(request: pytest.FixtureRequest) -> ModuleType:
    return request.param


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


def test_selector_and_shared_exception() -> None:
    assert wire.IMPLEMENTATION in ("cython", "python")
    assert wire.python_impl is wire_py
    assert (wire.IMPLEMENTATION == "cython") == (wire.cython_impl is not None)
    assert wire.LineTooLong is wire_py.LineTooLong
    if wire.cython_impl is not None:
        assert wire.cython_impl.LineTooLong is wire_py.LineTooLong
        assert wire.CommandParser is wire.cython_impl.CommandParser
    assert issubclass(wire.LineTooLong, Exception)


def test_whole_stream(w) -> None:
    p = w.CommandParser()
    assert p.feed(STREAM) == EXPECTED
    assert p.buffered() == 0
    assert p.overflow is False


def test_every_split_point(w) -> None:
    for i in range(len(STREAM) + 1):
        p = w.CommandParser()
        assert p.feed(STREAM[:i]) + p.feed(STREAM[i:]) == EXPECTED, i
        assert p.buffered() == 0


def test_one_byte_at_a_time(w) -> None:
    p = w.CommandParser()
    out = []
    for i in range(len(STREAM)):
        out += p.feed(STREAM[i:i + 1])
    assert out == EXPECTED
    assert p.buffered() == 0


def test_random_chunks(w) -> None:
    rng = random.Random(1234)
    data = STREAM * 20
    for _ in range(50):
        p = w.CommandParser()
        assert feed_chunks(p, data, random_sizes(rng, len(data))) == EXPECTED * 20


def test_cr_at_end_of_chunk(w) -> None:
    p = w.CommandParser()
    assert p.feed(b"ACK {}\r") == []
    assert p.buffered() == 7
    assert p.feed(b"\nFAIL") == [(b"ACK", b"{}")]
    assert p.buffered() == 4
    assert p.feed(b" x\r") == []
    assert p.feed(b"\n") == [(b"FAIL", b"x")]
    assert p.buffered() == 0


def test_partial_line_is_kept(w) -> None:
    p = w.CommandParser()
    assert p.feed(b"FET") == []
    assert p.buffered() == 3
    assert p.feed(b"") == []
    assert p.feed(b"CH default") == []
    assert p.feed(b"\r\nEND\r\n") == [(b"FETCH", b"default"), (b"END", b"")]


def test_bytes_like_input(w) -> None:
    p = w.CommandParser()
    assert p.feed(bytearray(b"A 1\nB")) == [(b"A", b"1")]
    assert p.feed(memoryview(b" 2\n")) == [(b"B", b"2")]


def test_results_are_bytes(w) -> None:
    p = w.CommandParser()
    ((verb, payload),) = p.feed(bytearray(b"PUSH {}\n"))
    assert type(verb) is bytes and type(payload) is bytes


def test_large_line_in_many_chunks_is_linear(w) -> None:
    # 8 MiB in 64-byte pieces: a quadratic buffer would copy ~0.5 TB and hit the timeout.
    payload = b"x" * (8 << 20)
    data = b"PUSH " + payload + b"\r\n"
    p = w.CommandParser()
    out = []
    for i in range(0, len(data), 64):
        out += p.feed(data[i:i + 64])
    assert out == [(b"PUSH", payload)]
    assert p.buffered() == 0


def test_default_max_line(w) -> None:
    assert w.CommandParser().max_line == 16 * 1024 * 1024


def test_line_at_limit_is_accepted(w) -> None:
    p = w.CommandParser(10)
    assert p.feed(b"0123456789\r\n" + b"abcdefghij\n") == [(b"0123456789", b""), (b"abcdefghij", b"")]
    assert not p.overflow


def test_trailing_cr_does_not_count_towards_limit(w) -> None:
    p = w.CommandParser(10)
    assert p.feed(b"0123456789\r") == []
    assert not p.overflow
    assert p.feed(b"\n") == [(b"0123456789", b"")]
    # ...but a \r that turns out to be inside the line does.
    assert p.feed(b"012345678\r") == []
    assert p.feed(b"x") == []
    assert p.overflow


def test_overflow_keeps_earlier_lines(w) -> None:
    p = w.CommandParser(10)
    out = p.feed(b"A 1\r\nB 2\n" + b"C" * 11 + b"\r\nD 4\r\n")
    assert out == [(b"A", b"1"), (b"B", b"2")]
    assert p.overflow is True
    assert p.buffered() == 0
    # The parser is done: later data is ignored, never raised on.
    assert p.feed(b"E 5\r\n") == []
    assert p.overflow is True


def test_overflow_on_incomplete_line(w) -> None:
    p = w.CommandParser(10)
    assert p.feed(b"OK 1\n" + b"x" * 6) == [(b"OK", b"1")]
    assert not p.overflow
    assert p.feed(b"y" * 4) == []
    assert not p.overflow  # exactly 10 bytes held
    assert p.feed(b"z") == []
    assert p.overflow
    assert p.buffered() == 0


def test_overflow_one_byte_at_a_time(w) -> None:
    data = b"A\n" + b"B" * 11 + b"\n"
    p = w.CommandParser(10)
    out = []
    for i in range(len(data)):
        out += p.feed(data[i:i + 1])
    assert out == [(b"A", b"")]
    assert p.overflow


def test_overflow_when_completing_a_buffered_line(w) -> None:
    p = w.CommandParser(10)
    assert p.feed(b"x" * 8) == []
    assert p.feed(b"yyy\nZ\n") == []
    assert p.overflow


def test_same_results_from_both_implementations() -> None:
    if wire.cython_impl is None:
        pytest.skip("faktory_fast._wire not built or FAKTORY_FAST_PURE set")
    rng = random.Random(99)
    alphabet = b"ab \r\n"
    for _ in range(300):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        sizes = random_sizes(rng, len(data), 7)
        limit = rng.randint(0, 8)
        results = []
        for impl in (wire.cython_impl, wire.python_impl):
            p = impl.CommandParser(limit)
            results.append((feed_chunks(p, data, sizes), p.overflow, p.buffered()))
        assert results[0] == results[1], (data, sizes, limit)


# -- serializers ----------------------------------------------------------------------------------

def test_constants(w) -> None:
    assert w.OK == b"+OK\r\n"
    assert w.NIL == b"$-1\r\n"
    assert w.ok() == b"+OK\r\n"


def test_simple(w) -> None:
    assert w.simple(b"HI {\"v\":2}") == b'+HI {"v":2}\r\n'
    assert w.simple(b"") == b"+\r\n"


def test_error(w) -> None:
    assert w.error("unknown command FOO") == b"-ERR unknown command FOO\r\n"
    assert w.error(b"bytes msg") == b"-ERR bytes msg\r\n"
    assert w.error("dup", "NOTUNIQUE") == b"-NOTUNIQUE dup\r\n"
    assert w.error("dup", b"NOTUNIQUE") == b"-NOTUNIQUE dup\r\n"
    assert w.error("a\r\nb\nc\rd") == b"-ERR a  b c d\r\n"
    assert w.error("ünï") == "-ERR ünï\r\n".encode()
    assert w.error("") == b"-ERR \r\n"


def test_bulk(w) -> None:
    assert w.bulk(None) == b"$-1\r\n"
    assert w.bulk(b"") == b"$0\r\n\r\n"
    assert w.bulk(b'{"jid":"1"}') == b'$11\r\n{"jid":"1"}\r\n'
    assert w.bulk(b"a\r\nb") == b"$4\r\na\r\nb\r\n"
    assert w.bulk("é") == b"$2\r\n\xc3\xa9\r\n"
    assert w.bulk(bytearray(b"xy")) == b"$2\r\nxy\r\n"
    big = bytes(range(256)) * 4096
    assert w.bulk(big) == b"$1048576\r\n" + big + b"\r\n"
    assert type(w.bulk(b"x")) is bytes
