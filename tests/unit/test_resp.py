"""faktory_fast.codec.resp: RESP2 reply reader and command packer, against both implementations."""
from __future__ import annotations

import enum
import math
import random
from typing import Any

import pytest

from faktory_fast.codec import resp
from tests.conftest import implementation

# -- a small test-side encoder and comparison helpers ---------------------------------------------

def encode(v: Any) -> bytes:
    """RESP2 encoding of a value as a Redis server would send it."""
    if v is None:
        return b"$-1\r\n"
    if isinstance(v, resp.ReplyError):
        return b"-" + str(v).encode() + b"\r\n"
    if isinstance(v, int):
        return b":%d\r\n" % v
    if isinstance(v, tuple):  # test convention: a status reply
        return b"+" + v[0] + b"\r\n"
    if isinstance(v, bytes):
        return b"$%d\r\n%b\r\n" % (len(v), v)
    if isinstance(v, list):
        return b"*%d\r\n" % len(v) + b"".join(encode(x) for x in v)
    raise TypeError(v)


def expected(v: Any) -> Any:
    """What the reader returns for encode(v)."""
    if isinstance(v, tuple):
        return v[0]
    if isinstance(v, list):
        return [expected(x) for x in v]
    return v


def norm(v: Any) -> Any:
    """Comparable form: exceptions compare by class name (each implementation has its own
    classes) and text."""
    if isinstance(v, Exception):
        return ("ERROR", type(v).__name__, str(v))
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    return v


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([0, -1, 7, 2**62, -(2**63), 2**70, -(2**80)])
    if kind == 2:
        return resp.ReplyError(rng.choice(["ERR unknown command 'x'", "WRONGTYPE bad", "ÜRR"]))
    if kind == 3:
        return (bytes(rng.choice(b"abc OK") for _ in range(rng.randint(0, 6))),)
    if kind in (4, 5):
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 2, 5, 40])))
    return [random_value(rng, depth + 1) for _ in range(rng.choice([0, 1, 2, 3, 6]))]


def feed_in(reader, data: bytes, sizes) -> list:
    out: list = []
    pos = 0
    for size in sizes:
        out += reader.feed(data[pos:pos + size])
        pos += size
    out += reader.feed(data[pos:])
    return out


def random_sizes(rng: random.Random, total: int, biggest: int = 23) -> list[int]:
    sizes = []
    while total > 0:
        size = rng.randint(0, biggest)
        sizes.append(size)
        total -= size
    return sizes


SAMPLE = (
    b"+OK\r\n"
    b"-ERR unknown command 'FOO'\r\n"
    b":42\r\n"
    b":-7\r\n"
    b"$5\r\nhello\r\n"
    b"$0\r\n\r\n"
    b"$-1\r\n"
    b"*-1\r\n"
    b"*0\r\n"
    b"$4\r\na\r\nb\r\n"  # a bulk may contain CRLF
    b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n*1\r\n-WRONGTYPE nope\r\n$-1\r\n"
    b"*2\r\n*0\r\n*1\r\n*0\r\n"
)
SAMPLE_VALUES = [
    b"OK",
    ("ERROR", "ReplyError", "ERR unknown command 'FOO'"),
    42,
    -7,
    b"hello",
    b"",
    None,
    None,
    [],
    b"a\r\nb",
    [b"a", [1, [("ERROR", "ReplyError", "WRONGTYPE nope")]], None],
    [[], [[]]],
]


# -- reader ---------------------------------------------------------------------------------------

def test_sample_whole(resp_impl) -> None:
    reader = resp_impl.RespReader()
    assert norm(reader.feed(SAMPLE)) == SAMPLE_VALUES
    assert reader.buffered() == 0


def test_sample_every_split_point(resp_impl) -> None:
    for i in range(len(SAMPLE) + 1):
        reader = resp_impl.RespReader()
        assert norm(reader.feed(SAMPLE[:i]) + reader.feed(SAMPLE[i:])) == SAMPLE_VALUES, i
        assert reader.buffered() == 0


def test_sample_one_byte_at_a_time(resp_impl) -> None:
    reader = resp_impl.RespReader()
    out = []
    for i in range(len(SAMPLE)):
        out += reader.feed(SAMPLE[i:i + 1])
    assert norm(out) == SAMPLE_VALUES
    assert reader.buffered() == 0


def test_sample_random_chunks(resp_impl) -> None:
    rng = random.Random(7)
    data = SAMPLE * 10
    for _ in range(50):
        reader = resp_impl.RespReader()
        assert norm(feed_in(reader, data, random_sizes(rng, len(data)))) == SAMPLE_VALUES * 10


def test_error_reply_is_returned_not_raised(resp_impl) -> None:
    (err,) = resp_impl.RespReader().feed(b"-ERR unknown command\r\n")
    assert type(err) is resp_impl.ReplyError
    assert str(err) == "ERR unknown command"
    assert err.args == ("ERR unknown command",)


def test_split_inside_crlf(resp_impl) -> None:
    reader = resp_impl.RespReader()
    assert reader.feed(b"+OK\r") == []
    assert reader.feed(b"\n$3\r\nabc\r") == [b"OK"]
    assert reader.feed(b"\n") == [b"abc"]
    assert reader.buffered() == 0


def test_nested_array_across_feeds(resp_impl) -> None:
    reader = resp_impl.RespReader()
    assert reader.feed(b"*2\r\n*2\r\n:1\r\n") == []
    assert reader.feed(b":2\r\n") == []
    assert reader.feed(b"$1\r\nx\r\n:9\r\n") == [[[1, 2], b"x"], 9]


def test_big_bulk_in_chunks(resp_impl) -> None:
    payload = random.Random(3).randbytes(1 << 20)
    data = b"$%d\r\n%b\r\n+after\r\n" % (len(payload), payload)
    reader = resp_impl.RespReader()
    out = []
    for i in range(0, len(data), 1000):
        out += reader.feed(data[i:i + 1000])
    assert out == [payload, b"after"]
    assert reader.buffered() == 0


def test_huge_bulk_in_small_chunks_is_linear(resp_impl) -> None:
    # 16 MiB in 256-byte pieces: re-copying or re-parsing per chunk would hit the timeout.
    payload = b"z" * (16 << 20)
    data = b"*1\r\n$%d\r\n%b\r\n" % (len(payload), payload)
    reader = resp_impl.RespReader()
    out = []
    for i in range(0, len(data), 256):
        out += reader.feed(data[i:i + 256])
    assert out == [[payload]]


def test_long_status_line_in_small_chunks_is_linear(resp_impl) -> None:
    line = b"+" + b"s" * (4 << 20) + b"\r\n"
    reader = resp_impl.RespReader()
    out = []
    for i in range(0, len(line), 64):
        out += reader.feed(line[i:i + 64])
    assert out == [line[1:-2]]


def test_many_small_replies_in_one_chunk(resp_impl) -> None:
    n = 20000
    chunk = b"".join(
        (b"+OK\r\n", b":%d\r\n" % i, b"$3\r\nabc\r\n", b"*2\r\n$1\r\nk\r\n$-1\r\n")[i % 4] for i in range(n)
    )
    out = resp_impl.RespReader().feed(chunk)
    assert len(out) == n
    assert out[:4] == [b"OK", 1, b"abc", [b"k", None]]
    assert out[-1] == [b"k", None]


def test_result_types(resp_impl) -> None:
    out = resp_impl.RespReader().feed(b"+a\r\n$1\r\nb\r\n:1\r\n")
    assert [type(v) for v in out] == [bytes, bytes, int]


def test_integers(resp_impl) -> None:
    data = b"".join(b":%d\r\n" % v for v in (0, -0, 9, -9, 2**63 - 1, -(2**63), 10**30, -(10**30)))
    assert resp_impl.RespReader().feed(data) == [0, 0, 9, -9, 2**63 - 1, -(2**63), 10**30, -(10**30)]


@pytest.mark.parametrize("reply", [
    b"_\r\n", b"#t\r\n", b",1.5\r\n", b"(12345678901234567890123\r\n", b"%1\r\n+a\r\n:1\r\n",
    b"~1\r\n:1\r\n", b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n", b"=8\r\ntxt:abcd\r\n",
    b"!3\r\nERR\r\n", b"|1\r\n+k\r\n+v\r\n+after\r\n",
])
def test_resp3_replies_are_protocol_errors(resp_impl, reply: bytes) -> None:
    # The client speaks RESP2 (it never sends HELLO 3): a RESP3 type byte is not Redis talking
    # to it, whether it starts a reply or sits inside an array.
    with pytest.raises(resp_impl.ProtocolError, match="unknown reply type byte"):
        resp_impl.RespReader().feed(reply)
    with pytest.raises(resp_impl.ProtocolError, match="unknown reply type byte"):
        resp_impl.RespReader().feed(b"*2\r\n:1\r\n" + reply)


@pytest.mark.parametrize("bad", [
    b"?what\r\n",
    b":12x\r\n",
    b":\r\n",
    b"$abc\r\n",
    b"*x\r\n",
    b"$3\r\nabcXY",
    b"$99999999999999999999999\r\n",
    b"*-3000000000000000000\r\n",
])
def test_protocol_errors(resp_impl, bad: bytes) -> None:
    with pytest.raises(resp_impl.ProtocolError):
        resp_impl.RespReader().feed(bad)


def test_bytes_like_input(resp_impl) -> None:
    reader = resp_impl.RespReader()
    assert reader.feed(bytearray(b"+A\r\n:")) == [b"A"]
    assert reader.feed(memoryview(b"5\r\n")) == [5]


def test_randomized_round_trip(resp_impl) -> None:
    rng = random.Random(2024)
    for _ in range(200):
        values = [random_value(rng) for _ in range(rng.randint(1, 8))]
        data = b"".join(encode(v) for v in values)
        want = norm([expected(v) for v in values])
        assert norm(resp_impl.RespReader().feed(data)) == want
        reader = resp_impl.RespReader()
        assert norm(feed_in(reader, data, random_sizes(rng, len(data), 9))) == want
        assert reader.buffered() == 0


def test_same_results_from_both_implementations() -> None:
    compiled, source = implementation("codec.resp", "cython"), implementation("codec.resp", "python")
    rng = random.Random(5)
    for _ in range(200):
        data = b"".join(encode(random_value(rng)) for _ in range(5))
        sizes = random_sizes(rng, len(data), 11)
        results = []
        for impl in (compiled, source):
            reader = impl.RespReader()
            results.append(norm(feed_in(reader, data, sizes)))
        assert results[0] == results[1]


# -- packer ---------------------------------------------------------------------------------------

class Prio(enum.IntEnum):
    HIGH = 9


def test_pack_command_mixed_types(resp_impl) -> None:
    got = resp_impl.pack_command("SET", b"k\r\n", 42, -1, 1.5, "é", bytearray(b"ba"), memoryview(b"mv"))
    assert got == (
        b"*8\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n42\r\n$2\r\n-1\r\n$3\r\n1.5\r\n"
        b"$2\r\n\xc3\xa9\r\n$2\r\nba\r\n$2\r\nmv\r\n"
    )
    assert type(got) is bytes


def test_pack_command_numbers(resp_impl) -> None:
    for v in (0.1, 1e100, -0.0, 1 / 3, 2.0**70, math.inf, -math.inf):
        assert resp_impl.pack_command(v) == b"*1\r\n$%d\r\n%b\r\n" % (len(repr(v)), repr(v).encode())
    assert resp_impl.pack_command(2**100) == b"*1\r\n$31\r\n%d\r\n" % 2**100
    assert resp_impl.pack_command(Prio.HIGH) == b"*1\r\n$1\r\n9\r\n"


def test_pack_command_empty_and_large(resp_impl) -> None:
    assert resp_impl.pack_command() == b"*0\r\n"
    assert resp_impl.pack_command(b"") == b"*1\r\n$0\r\n\r\n"
    big = b"j" * 1234567
    assert resp_impl.pack_command("LPUSH", "q", big) == b"*3\r\n$5\r\nLPUSH\r\n$1\r\nq\r\n$1234567\r\n" + big + b"\r\n"
    many = [str(i) for i in range(12)]
    assert resp_impl.pack_command(*many) == b"*12\r\n" + b"".join(b"$%d\r\n%b\r\n" % (len(s), s.encode()) for s in many)


@pytest.mark.parametrize("bad", [True, None, object(), [1]])
def test_pack_command_rejects_other_types(resp_impl, bad: Any) -> None:
    with pytest.raises(TypeError):
        resp_impl.pack_command("SET", "k", bad)


def test_pack_then_read_back(resp_impl) -> None:
    # A command is itself a RESP array of bulk strings, so the reader can parse it.
    args = ("EVALSHA", b"\x00\xff", 7, 2.25, "ü")
    assert resp_impl.RespReader().feed(resp_impl.pack_command(*args)) == [
        [b"EVALSHA", b"\x00\xff", b"7", b"2.25", "ü".encode()]]
