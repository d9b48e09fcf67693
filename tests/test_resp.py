"""faktory_fast.resp: RESP reply reader and command packer, against both implementations."""
from __future__ import annotations

import enum
import math
import random
from types import ModuleType
from typing import Any

import pytest

from faktory_fast import resp, resp_py

IMPLS = [
    pytest.param(
        resp.cython_impl, id="cython",
        marks=pytest.mark.skipif(
            resp.cython_impl is None,
            reason="faktory_fast._resp not built (make build) or FAKTORY_FAST_PURE set"),
    ),
    pytest.param(resp.python_impl, id="python"),
]


@pytest.fixture(params=IMPLS)
def r(request: pytest.FixtureRequest) -> ModuleType:
    return request.param


# -- a small test-side encoder and comparison helpers ---------------------------------------------

def encode(v: Any) -> bytes:
    """RESP2 encoding of a value as a Redis server would send it."""
    if v is None:
        return b"$-1\r\n"
    if isinstance(v, resp_py.ReplyError):
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
    """Comparable form: exceptions compare by type and text."""
    if isinstance(v, Exception):
        return ("ERROR", type(v), str(v))
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
        return resp_py.ReplyError(rng.choice(["ERR unknown command 'x'", "WRONGTYPE bad", "ÜRR"]))
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
    ("ERROR", resp_py.ReplyError, "ERR unknown command 'FOO'"),
    42,
    -7,
    b"hello",
    b"",
    None,
    None,
    [],
    b"a\r\nb",
    [b"a", [1, [("ERROR", resp_py.ReplyError, "WRONGTYPE nope")]], None],
    [[], [[]]],
]


# -- reader ---------------------------------------------------------------------------------------

def test_selector_and_shared_exceptions() -> None:
    assert resp.IMPLEMENTATION in ("cython", "python")
    assert resp.python_impl is resp_py
    assert (resp.IMPLEMENTATION == "cython") == (resp.cython_impl is not None)
    assert resp.ReplyError is resp_py.ReplyError
    assert resp.ProtocolError is resp_py.ProtocolError
    if resp.cython_impl is not None:
        assert resp.cython_impl.ReplyError is resp_py.ReplyError
        assert resp.cython_impl.ProtocolError is resp_py.ProtocolError
        assert resp.RespReader is resp.cython_impl.RespReader


def test_sample_whole(r) -> None:
    reader = r.RespReader()
    assert norm(reader.feed(SAMPLE)) == SAMPLE_VALUES
    assert reader.buffered() == 0


def test_sample_every_split_point(r) -> None:
    for i in range(len(SAMPLE) + 1):
        reader = r.RespReader()
        assert norm(reader.feed(SAMPLE[:i]) + reader.feed(SAMPLE[i:])) == SAMPLE_VALUES, i
        assert reader.buffered() == 0


def test_sample_one_byte_at_a_time(r) -> None:
    reader = r.RespReader()
    out = []
    for i in range(len(SAMPLE)):
        out += reader.feed(SAMPLE[i:i + 1])
    assert norm(out) == SAMPLE_VALUES
    assert reader.buffered() == 0


def test_sample_random_chunks(r) -> None:
    rng = random.Random(7)
    data = SAMPLE * 10
    for _ in range(50):
        reader = r.RespReader()
        assert norm(feed_in(reader, data, random_sizes(rng, len(data)))) == SAMPLE_VALUES * 10


def test_error_reply_is_returned_not_raised(r) -> None:
    (err,) = r.RespReader().feed(b"-ERR unknown command\r\n")
    assert type(err) is resp_py.ReplyError
    assert str(err) == "ERR unknown command"
    assert err.args == ("ERR unknown command",)


def test_split_inside_crlf(r) -> None:
    reader = r.RespReader()
    assert reader.feed(b"+OK\r") == []
    assert reader.feed(b"\n$3\r\nabc\r") == [b"OK"]
    assert reader.feed(b"\n") == [b"abc"]
    assert reader.buffered() == 0


def test_nested_array_across_feeds(r) -> None:
    reader = r.RespReader()
    assert reader.feed(b"*2\r\n*2\r\n:1\r\n") == []
    assert reader.feed(b":2\r\n") == []
    assert reader.feed(b"$1\r\nx\r\n:9\r\n") == [[[1, 2], b"x"], 9]


def test_big_bulk_in_chunks(r) -> None:
    payload = random.Random(3).randbytes(1 << 20)
    data = b"$%d\r\n%b\r\n+after\r\n" % (len(payload), payload)
    reader = r.RespReader()
    out = []
    for i in range(0, len(data), 1000):
        out += reader.feed(data[i:i + 1000])
    assert out == [payload, b"after"]
    assert reader.buffered() == 0


def test_huge_bulk_in_small_chunks_is_linear(r) -> None:
    # 16 MiB in 256-byte pieces: re-copying or re-parsing per chunk would hit the timeout.
    payload = b"z" * (16 << 20)
    data = b"*1\r\n$%d\r\n%b\r\n" % (len(payload), payload)
    reader = r.RespReader()
    out = []
    for i in range(0, len(data), 256):
        out += reader.feed(data[i:i + 256])
    assert out == [[payload]]


def test_long_status_line_in_small_chunks_is_linear(r) -> None:
    line = b"+" + b"s" * (4 << 20) + b"\r\n"
    reader = r.RespReader()
    out = []
    for i in range(0, len(line), 64):
        out += reader.feed(line[i:i + 64])
    assert out == [line[1:-2]]


def test_many_small_replies_in_one_chunk(r) -> None:
    n = 20000
    chunk = b"".join(
        (b"+OK\r\n", b":%d\r\n" % i, b"$3\r\nabc\r\n", b"*2\r\n$1\r\nk\r\n$-1\r\n")[i % 4] for i in range(n)
    )
    out = r.RespReader().feed(chunk)
    assert len(out) == n
    assert out[:4] == [b"OK", 1, b"abc", [b"k", None]]
    assert out[-1] == [b"k", None]


def test_result_types(r) -> None:
    out = r.RespReader().feed(b"+a\r\n$1\r\nb\r\n:1\r\n")
    assert [type(v) for v in out] == [bytes, bytes, int]


def test_integers(r) -> None:
    data = b"".join(b":%d\r\n" % v for v in (0, -0, 9, -9, 2**63 - 1, -(2**63), 10**30, -(10**30)))
    assert r.RespReader().feed(data) == [0, 0, 9, -9, 2**63 - 1, -(2**63), 10**30, -(10**30)]


def test_resp3_types(r) -> None:
    data = (
        b"_\r\n#t\r\n#f\r\n,1.5\r\n,-inf\r\n,3\r\n(12345678901234567890123\r\n"
        b"%2\r\n+a\r\n:1\r\n$1\r\nb\r\n*1\r\n:2\r\n"
        b"~2\r\n:1\r\n:2\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"
        b"=15\r\ntxt:Some string\r\n!21\r\nSYNTAX invalid syntax\r\n"
        b"|1\r\n+ttl\r\n:3600\r\n+after-attr\r\n"
        b"*2\r\n|1\r\n+k\r\n+v\r\n:1\r\n:2\r\n"
        b"%0\r\n%-1\r\n~0\r\n"
    )
    out = r.RespReader().feed(data)
    assert norm(out) == [
        None, True, False, 1.5, -math.inf, 3.0, 12345678901234567890123,
        {b"a": 1, b"b": [2]},
        [1, 2], [b"message", b"ch", b"x"],
        b"Some string", ("ERROR", resp_py.ReplyError, "SYNTAX invalid syntax"),
        b"after-attr",
        [1, 2],
        {}, None, [],
    ]
    assert type(out[1]) is bool and type(out[3]) is float


def test_resp3_nan_and_map_with_array_keys(r) -> None:
    (nan, m) = r.RespReader().feed(b",nan\r\n%1\r\n*2\r\n:1\r\n:2\r\n+v\r\n")
    assert math.isnan(nan)
    assert m == {(1, 2): b"v"}


def test_resp3_every_split_point(r) -> None:
    data = b"%1\r\n=8\r\ntxt:a\r\nb\r\n|1\r\n+k\r\n+v\r\n~1\r\n!3\r\nERR\r\n#t\r\n,2.5\r\n"
    whole = norm(r.RespReader().feed(data))
    assert whole == [{b"a\r\nb": [("ERROR", resp_py.ReplyError, "ERR")]}, True, 2.5]
    for i in range(len(data) + 1):
        reader = r.RespReader()
        assert norm(reader.feed(data[:i]) + reader.feed(data[i:])) == whole, i


@pytest.mark.parametrize("bad", [
    b"?what\r\n",
    b":12x\r\n",
    b":\r\n",
    b"$abc\r\n",
    b"*x\r\n",
    b"$3\r\nabcXY",
    b",notafloat\r\n",
    b"$99999999999999999999999\r\n",
    b"*-3000000000000000000\r\n",
])
def test_protocol_errors(r, bad: bytes) -> None:
    with pytest.raises(resp_py.ProtocolError):
        r.RespReader().feed(bad)


def test_protocol_error_class_is_shared(r) -> None:
    with pytest.raises(resp.ProtocolError):
        r.RespReader().feed(b"!!!\r\n")


def test_bytes_like_input(r) -> None:
    reader = r.RespReader()
    assert reader.feed(bytearray(b"+A\r\n:")) == [b"A"]
    assert reader.feed(memoryview(b"5\r\n")) == [5]


def test_randomized_round_trip(r) -> None:
    rng = random.Random(2024)
    for _ in range(200):
        values = [random_value(rng) for _ in range(rng.randint(1, 8))]
        data = b"".join(encode(v) for v in values)
        want = norm([expected(v) for v in values])
        assert norm(r.RespReader().feed(data)) == want
        reader = r.RespReader()
        assert norm(feed_in(reader, data, random_sizes(rng, len(data), 9))) == want
        assert reader.buffered() == 0


def test_same_results_from_both_implementations() -> None:
    if resp.cython_impl is None:
        pytest.skip("faktory_fast._resp not built or FAKTORY_FAST_PURE set")
    rng = random.Random(5)
    for _ in range(200):
        data = b"".join(encode(random_value(rng)) for _ in range(5))
        sizes = random_sizes(rng, len(data), 11)
        results = []
        for impl in (resp.cython_impl, resp.python_impl):
            reader = impl.RespReader()
            results.append(norm(feed_in(reader, data, sizes)))
        assert results[0] == results[1]


# -- packer ---------------------------------------------------------------------------------------

class Prio(enum.IntEnum):
    HIGH = 9


def test_pack_command_mixed_types(r) -> None:
    got = r.pack_command("SET", b"k\r\n", 42, -1, 1.5, "é", bytearray(b"ba"), memoryview(b"mv"))
    assert got == (
        b"*8\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n42\r\n$2\r\n-1\r\n$3\r\n1.5\r\n"
        b"$2\r\n\xc3\xa9\r\n$2\r\nba\r\n$2\r\nmv\r\n"
    )
    assert type(got) is bytes


def test_pack_command_numbers(r) -> None:
    for v in (0.1, 1e100, -0.0, 1 / 3, 2.0**70, math.inf, -math.inf):
        assert r.pack_command(v) == b"*1\r\n$%d\r\n%b\r\n" % (len(repr(v)), repr(v).encode())
    assert r.pack_command(2**100) == b"*1\r\n$31\r\n%d\r\n" % 2**100
    assert r.pack_command(Prio.HIGH) == b"*1\r\n$1\r\n9\r\n"


def test_pack_command_empty_and_large(r) -> None:
    assert r.pack_command() == b"*0\r\n"
    assert r.pack_command(b"") == b"*1\r\n$0\r\n\r\n"
    big = b"j" * 1234567
    assert r.pack_command("LPUSH", "q", big) == b"*3\r\n$5\r\nLPUSH\r\n$1\r\nq\r\n$1234567\r\n" + big + b"\r\n"
    many = [str(i) for i in range(12)]
    assert r.pack_command(*many) == b"*12\r\n" + b"".join(b"$%d\r\n%b\r\n" % (len(s), s.encode()) for s in many)


@pytest.mark.parametrize("bad", [True, None, object(), [1]])
def test_pack_command_rejects_other_types(r, bad: Any) -> None:
    with pytest.raises(TypeError):
        r.pack_command("SET", "k", bad)


def test_pack_commands(r) -> None:
    cmds = [("MULTI",), ("INCR", "n"), ("EXEC",)]
    assert r.pack_commands(cmds) == b"".join(r.pack_command(*c) for c in cmds)
    assert r.pack_commands([]) == b""


def test_pack_then_read_back(r) -> None:
    # A command is itself a RESP array of bulk strings, so the reader can parse it.
    args = ("EVALSHA", b"\x00\xff", 7, 2.25, "ü")
    assert r.RespReader().feed(r.pack_command(*args)) == [[b"EVALSHA", b"\x00\xff", b"7", b"2.25", "ü".encode()]]
