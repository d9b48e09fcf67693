"""conf.d fuzzed: every key of every table given wrong types, numbers out of range, past 64
bits, negative, floats, NaN and infinities, strings, arrays, nested tables; files in bad
encodings, unreadable or empty.

The rule under test: a configuration is either loaded with values every consumer takes (the
orjson dumps of the master, the Lua reading the throttle table, cron's pushes, the compiled
line parser) or refused whole with ONE line naming the file and the key. At start in-process
(``config.load``, the bulk) and through the real command (exit status 2, one line on stderr);
on SIGHUP against a running server (one log line, still serving, its configuration kept).

Seeded: a failure reproduces. The bounds pinned here are config.INT_SETTINGS and
LINE_TIMEOUT_RANGE, cron.JOB_INTS and the throttles' (docs/enterprise.md), restated: a change
to one must be made here too, on purpose.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import random
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from faktory_fast import config
from faktory_fast.codec import wire
from faktory_fast.config import ConfigError
from tests.support import ROOT, write_conf

SEED = 22
SECRET = "hunter2"  # a password in a refused value: never shown
MiB = 1 << 20
NAN, INF = float("nan"), float("inf")
#: A TOML datetime, date and time: types no key takes as a number or a string.
WHEN = [dt.datetime(1979, 5, 27, 7, 32, tzinfo=dt.UTC), dt.date(1979, 5, 27), dt.time(7, 32)]
WRONG_TYPES: list[Any] = [True, False, "7", "", "x" * 300, [], [1, 2], {"a": 1},
                          {"a": {"b": [1, {"c": 2}]}}, 1.5, NAN, INF, -INF, *WHEN]
#: The same for a key that takes any string.
NOT_STRINGS = [v for v in WRONG_TYPES if not isinstance(v, str)]


# -- TOML text ------------------------------------------------------------------------------------

def toml_value(v: Any) -> str:
    """``v`` as a TOML value (inline)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a TOML basic string as well
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def table(name: str, values: dict[str, Any]) -> str:
    """``[name]`` with ``values`` (keys quoted: any string may be a key)."""
    return f"[{name}]\n" + "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in values.items())


def cron_entry(schedule: Any = "* * * * *", **job_fields: Any) -> str:
    """A ``[[cron]]`` entry whose job has ``job_fields`` (a type unless told otherwise)."""
    fields = {"type": "CronJob", **job_fields}
    return ("[[cron]]\n" + f"schedule = {toml_value(schedule)}\n" +
            table("cron.job", {k: v for k, v in fields.items() if v is not None}))


# -- the cases ------------------------------------------------------------------------------------

@dataclass
class Case:
    """One conf.d file (``text`` or raw ``data``) with the key it is about; ``valid``: whether
    it must load (None: either way, but cleanly)."""

    key: str
    text: str = ""
    valid: bool | None = False
    data: bytes | None = None

    @property
    def content(self) -> bytes:
        return self.data if self.data is not None else self.text.encode()

    def __repr__(self) -> str:
        return f"Case({self.key!r}, valid={self.valid}, {self.content[:120]!r})"


def numbers(rng: random.Random, least: int, most: int) -> list[Any]:
    """Integers at and around [least, most], far past it and past 64 bits, and the wrong types
    (floats, NaN, strings, arrays...)."""
    return [least, most, rng.randint(least, most), least - 1, most + 1,
            most + rng.randint(1, 10**9), least - rng.randint(1, 10**9), -1, 0,
            2**63 - 1, 2**63, 2**64, 99999999999999999999, -(2**63) - 1, rng.getrandbits(200),
            -rng.getrandbits(80), float(least), float(most) + 0.5, *WRONG_TYPES]


def int_ok(least: int, most: int) -> Callable[[Any], bool]:
    """The oracle of an integer key: an int (not a bool, not a float) in [least, most]."""
    return lambda v: type(v) is int and least <= v <= most


def one_of(*allowed: Any) -> Callable[[Any], bool]:
    """The oracle of a key taking one of some strings."""
    return lambda v: isinstance(v, str) and v in allowed


def junk(rng: random.Random) -> str:
    """A string no setting takes: control characters, spaces, quotes, non-ASCII."""
    alphabet = "ab \t\"'\\\0\x1b\n\u2028é€𝄞:/@[]{}#=*"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20))) + "\0"


def ours_cases(rng: random.Random) -> Iterator[Case]:
    """[faktory_fast]: every key."""
    ints = {"processes": (1, 256), "max_line": (1, 512 * MiB), "max_connections": (1, 1_000_000),
            "backup_every": (0, 365 * 86400), "backup_keep": (1, 10_000),
            "redis_wait_timeout": (1, 60_000), "redis_hold": (0, 600_000),
            "batch_retention": (1, 10 * 365 * 86400),
            "line_budget": (16 * MiB, 64 << 30), "metrics_job_types": (0, 10_000)}
    for key, (least, most) in ints.items():
        for v in numbers(rng, least, most):
            yield Case(key, table("faktory_fast", {key: v}), int_ok(least, most)(v))
    # Replicas need a Redis of one's own.
    url = {"redis_url": "redis://localhost:6379/0"}
    for v in numbers(rng, 0, 1000):
        yield Case("redis_wait_replicas", table("faktory_fast", {**url, "redis_wait_replicas": v}),
                   int_ok(0, 1000)(v))
    yield Case("redis_wait_replicas", table("faktory_fast", {"redis_wait_replicas": 1}))
    for v in [0.1, 0.5, 1, 60, 86400, 0, 0.09, -1, 86400.5, 1e9, 1e300, 5e-324,
              rng.uniform(0.1, 86400), *WRONG_TYPES]:
        ok = type(v) in (int, float) and 0.1 <= v <= 86400
        yield Case("line_timeout", table("faktory_fast", {"line_timeout": v}), ok)
    for key, allowed in (("log_level", config.LOG_LEVELS), ("durability", ("everysec", "always"))):
        for v in [*allowed, "INFO", "", "debug ", junk(rng), *WRONG_TYPES, 3, 2**64]:
            yield Case(key, table("faktory_fast", {key: v}), one_of(*allowed)(v))
    for v in ["/usr/bin/redis-server", "redis-server", "", "a\0b", *WRONG_TYPES, 7]:
        ok = isinstance(v, str) and v != "" and "\0" not in v
        yield Case("redis_server", table("faktory_fast", {"redis_server": v}), ok)
    for v in ["redis://localhost:6379/0", "rediss://h.example:6380", "unix:///tmp/r.sock?db=3",
              "/tmp/r.sock", "redis+sentinel://127.0.0.1:26379,[::1]:26380/mymaster/2"]:
        yield Case("redis_url", table("faktory_fast", {"redis_url": v}), True)
    for v in ["", "http://h:1", "redis://h:99999", "redis://h:6379/x", "redis://h:6379/٣",
              "redis://h:6379/99999999999999999999", "redis://h:6379/" + "9" * 5000,
              "unix://", "unix:///tmp/a\0b", "unix:///tmp/r.sock?db=-1",
              "redis+sentinel://h:1", "redis+sentinel://h:99999/m", "redis://ho st:1",
              "redis+sentinel://h!:1/m", f"redis://:{SECRET}@h:99999",
              f"redis+sentinel://:{SECRET}@h:99999/m?sentinel_password={SECRET}",
              junk(rng), *WRONG_TYPES, 1]:
        yield Case("redis_url", table("faktory_fast", {"redis_url": v}), False)
    for v in [True, False, 1, 0, "true", "yes", *WHEN]:
        yield Case("proxy_protocol", table("faktory_fast", {"proxy_protocol": v}),
                   isinstance(v, bool))
    for v in ["127.0.0.0/8,::1/128", "10.0.0.1", ["10.0.0.0/8", "192.168.1.1"]]:
        yield Case("proxy_from", table("faktory_fast", {"proxy_from": v}), True)
    for v in ["", ",", "10.0.0.0/33", "nowhere", ["10.0.0.1", 3], [[]], [], junk(rng), 1, 1.5,
              {"a": "10.0.0.1"}, True, *WHEN]:
        yield Case("proxy_from", table("faktory_fast", {"proxy_from": v}), False)
    # Ours is ours: a key we do not know is a typo, not something to ignore.
    for key in ("backup_evry", "binding", "password", ""):
        yield Case(key or "''", table("faktory_fast", {key: 1}), False)


def faktory_and_web_cases(rng: random.Random) -> Iterator[Case]:
    """[faktory] and [web]: binding and password."""
    good = ["127.0.0.1:7419", ":7500", "localhost:0", "[::1]:7419", "0.0.0.0:65535",
            "my-host.example.com:80", "host_1:1"]
    bad = ["", "7419", "host:", ":", "host:65536", "host:-1", "host:99999999999999999999",
           "host:" + "9" * 5000, "host:1x", "host:٣", "ho st:1", "h\0:1", "ünï:1", "a" * 300 + ":1",
           "a..b:1", "[::1:1", junk(rng)]
    for name in ("faktory", "web"):
        for v in good:
            yield Case("binding", table(name, {"binding": v}), True)
        for v in [*bad, *WRONG_TYPES, 7419]:
            yield Case("binding", table(name, {"binding": v}), False)
        for v in ["s3cret", "", "with space", "é€𝄞 \t\u2028"]:
            yield Case("password", table(name, {"password": v}), True)
        for v in [f"{SECRET}\0", "/nonexistent/password", *NOT_STRINGS, 1234]:
            yield Case("password", table(name, {"password": v}), False)


def throttle_cases(rng: random.Random) -> Iterator[Case]:
    """[throttles]: the queue name, its kind, limit and timeout."""
    for kind in ("concurrency", "worker"):
        for v in numbers(rng, 1, 1_000_000):
            yield Case(kind, table("throttles", {"q1": {kind: v}}), int_ok(1, 1_000_000)(v))
    for v in numbers(rng, 1, 365 * 86400):
        yield Case("timeout", table("throttles", {"q1": {"concurrency": 2, "timeout": v}}),
                   int_ok(1, 365 * 86400)(v))
    for q in ["a.b-c_D9", "x" * 200]:
        yield Case("throttles", table("throttles", {q: {"worker": 1}}), True)
    for q in ["", "a b", "a:b", "é", "a\nb", "a\0b"]:
        yield Case("throttles", table("throttles", {q: {"worker": 1}}), False)
    for spec in [3, "concurrency", [], {}, {"timeout": 5}, {"concurrency": 1, "worker": 1},
                 {"concurrency": 1, "rate": 5}, {"concurrency": {"n": 1}}, *WHEN]:
        yield Case("throttles", table("throttles", {"q1": spec}), False)
    for whole in ["throttles = 3\n", "throttles = []\n", "[[throttles]]\nq1 = 1\n",
                  'throttles = "q1"\n']:
        yield Case("throttles", whole, False)


def cron_cases(rng: random.Random) -> Iterator[Case]:
    """[[cron]]: the schedule and every [cron.job] key."""
    for v in ["* * * * *", "*/5 * * * *", "@daily", "@hourly", "0 9 * * 1-5", "  0  0 * * *  ",
              "0 0 L 2 *", "0 0 29 2 *"]:
        yield Case("schedule", cron_entry(v), True)
    for v in ["", " ", "* * * *", "* * * * * *", "* * * * * * *", "61 * * * *", "@sometimes",
              "0 0 30 2 *", "0 0 31 4 *", "nope", "١ * * * *", junk(rng), *WRONG_TYPES, 5]:
        yield Case("schedule", cron_entry(v), False)
    for v in ["Job", "x" * 1000, "with space", "é\t𝄞"]:
        yield Case("type", cron_entry(type=v), True)
    for v in ["", *NOT_STRINGS, 1]:
        yield Case("type", cron_entry(type=v), False)
    for v in ["default", "a.b-c_D9"]:
        yield Case("queue", cron_entry(queue=v), True)
    for v in ["", "a b", "a:b", "é", "a\nb", "x" * 300 + "!", *NOT_STRINGS, 1]:
        yield Case("queue", cron_entry(queue=v), False)
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    for v in [[], [1, "x"], [[1, [2]], {"a": 1}], [2**63 - 1, -(2**63)], [1.5, True],
              [WHEN[0]], [{"b": [{"c": "d"}]}]]:
        yield Case("args", cron_entry(args=v), True)
    for v in [[2**63], [99999999999999999999], [-(2**63) - 1], [NAN], [INF], [{"a": -INF}],
              [[1, [NAN]]], deep, "x", 1, {"a": 1}, True, 1.5, WHEN[0]]:
        yield Case("args", cron_entry(args=v), False)
    for key, (least, most) in {"retry": (-1, 500), "reserve_for": (0, 86400),
                               "priority": (1, 9), "backtrace": (0, 1000)}.items():
        for v in numbers(rng, least, most):
            yield Case(key, cron_entry(**{key: v}), int_ok(least, most)(v))
    for v in [{}, {"a": 1}, {"expires_in": 60}, {"expires_in": 1.5}, {"unique_for": 60},
              {"expires_at": "2100-01-01T00:00:00Z"}, {"n": {"deep": [1, {"x": "y"}]}},
              {"unique_for": 3600, "unique_until": "start"}]:
        yield Case("custom", cron_entry(custom=v), True)
    for v in [{"expires_in": "x"}, {"expires_in": 1e300}, {"expires_in": NAN},
              {"expires_in": 2**64}, {"unique_for": 10**12}, {"unique_for": INF},
              {"expires_at": "yesterday"}, {"expires_at": 5}, {"a": 2**64}, {"a": NAN},
              {"a": [INF]}, [1], "x", 1, 1.5, True, WHEN[0]]:
        yield Case("custom", cron_entry(custom=v), False)
    yield Case("at", cron_entry(at="2030-01-01T00:00:00Z"), False)  # not a [cron.job] key
    yield Case("when", '[[cron]]\nschedule = "* * * * *"\nwhen = 1\n[cron.job]\ntype = "A"\n')
    yield Case("job", '[[cron]]\nschedule = "* * * * *"\njob = "A"\n')
    yield Case("job", '[[cron]]\nschedule = "* * * * *"\n')
    for whole in ["cron = 3\n", "[cron]\nschedule = 1\n", "cron = [1]\n", 'cron = ["* * * * *"]\n',
                  "cron = [[]]\n"]:
        yield Case("cron", whole, False)


def shape_cases() -> Iterator[Case]:
    """Tables that are not tables."""
    for name in ("faktory", "web", "faktory_fast"):
        for v in [1, "x", [], [{"a": 1}], True, WHEN[0]]:
            yield Case(name, f"{name} = {toml_value(v)}\n", False)


def encoding_cases(rng: random.Random) -> Iterator[Case]:
    """Files that are not UTF-8 TOML, or hold nothing."""
    text = '[web]\npassword = "café"\n'
    yield Case("UTF-8", data=text.encode("utf-8"), valid=True)
    yield Case("UTF-8", data=b"\xef\xbb\xbf" + text.encode("utf-8"), valid=True)  # with a BOM
    for data in (text.encode("latin-1"), text.encode("utf-16"), text.encode("utf-8")[:-5] + b"\xc3",
                 b"\xff\xfe\xfd", b"[faktory]\nbinding = \"\x80:1\"\n"):
        yield Case("UTF-8", data=data, valid=False)
    for data in (b"", b"\n\n  \n", b"# only a comment\n", b"\t"):
        yield Case("empty", data=data, valid=True)
    for data in (b"\0", b"[web\n", b'a = "\\ud800"\n', b"a = " + b"[" * 3000 + b"]" * 3000,
                 b"a = " + b"1" * 5000, b"[faktory_fast]\nmax_line = 1\nmax_line = 2\n"):
        yield Case("TOML", data=data, valid=False)
    for _ in range(20):  # noise: loaded or refused, cleanly
        yield Case("noise", data=rng.randbytes(rng.randint(1, 80)), valid=None)


def all_cases() -> list[Case]:
    rng = random.Random(SEED)
    return [*ours_cases(rng), *faktory_and_web_cases(rng), *throttle_cases(rng),
            *cron_cases(rng), *shape_cases(), *encoding_cases(rng)]


CASES = all_cases()


# -- what every consumer needs of a loaded configuration -----------------------------------------

def check_consumable(cfg: config.Config) -> None:
    """What the master, the server processes and Redis do with the configuration, done here:
    each must succeed for a configuration that loaded."""
    # The settings the master hands its server processes, and the tables' digest (orjson).
    orjson.dumps({f: getattr(cfg, f) for f in config.Config.__dataclass_fields__ if f != "cron"})
    orjson.dumps([sorted(cfg.throttles.items()), sorted(e.id for e in cfg.cron)])
    wire.CommandFramer(cfg.max_line)  # compiled: a C Py_ssize_t
    assert cfg.max_line <= cfg.line_budget
    for password in (cfg.password, cfg.web_password):
        assert "\0" not in password  # an environment variable of the web UI
    now = time.time()
    for kind, limit, timeout in cfg.throttles.values():
        # Lua reads "<kind> <limit> <timeout>" with tonumber (doubles), and ZADDs now + timeout.
        assert re.fullmatch(r"[a-z]+ \d+ \d+", f"{kind} {limit} {timeout}")
        assert limit < 2**53 and now + timeout < 2**53
    for entry in cfg.cron:
        entry.prepared(time.time_ns())
        assert entry.next_tick(now, dt.UTC) > now
        list(entry.ticks(now - 600, now, dt.UTC))


def load(tmp_path: Any, case: Case, name: str = "fuzz.toml") -> config.Config:
    """config.load with conf.d holding only ``name``, of the case's content."""
    confd = tmp_path / "conf" / "conf.d"
    confd.mkdir(parents=True, exist_ok=True)
    for old in confd.iterdir():
        old.unlink()
    (confd / name).write_bytes(case.content)
    cfg = config.load(["-c", str(tmp_path / "conf")], {"HOME": str(tmp_path)})
    assert cfg is not None
    return cfg


def check_refusal(message: str, case: Case, path: str) -> None:
    """One line, naming the file (or conf.d) and, when the file is TOML, the key."""
    assert len(message.splitlines()) == 1 and "\n" not in message, message
    assert SECRET not in message, message
    assert path in message or os.path.dirname(path) in message, message
    if case.data is None and case.text:
        try:
            tomllib.loads(case.text)
        except (ValueError, RecursionError):
            return  # refused as TOML: a message about the file, not a key
        assert case.key in message, message


def test_every_key_at_start(tmp_path: Any) -> None:
    """config.load on each case: loaded (and consumable) when valid, else one ConfigError line
    naming the file and the key; never another exception."""
    path = str(tmp_path / "conf" / "conf.d" / "fuzz.toml")
    assert len(CASES) > 700
    wrong = []
    for case in CASES:
        try:
            cfg = load(tmp_path, case)
        except ConfigError as exc:
            if case.valid:
                wrong.append(f"{case} refused: {exc}")
            check_refusal(str(exc), case, path)
            continue
        if case.valid is False:
            wrong.append(f"{case} loaded")
        check_consumable(cfg)
    assert not wrong, "\n".join(wrong)


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """Any TOML value, arrays and tables (of known keys) down to three levels."""
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.choice([0, 1, -1, 2**63 - 1, 2**63, 2**64, rng.getrandbits(70)])
    if kind == 1:
        return rng.choice([NAN, INF, -INF, 0.5, 1e300, -0.0])
    if kind == 2:
        return rng.choice(["", "x", "* * * * *", "@daily", "default", "127.0.0.1:1", "info"])
    if kind == 3:
        return rng.choice([True, False])
    if kind == 4:
        return rng.choice(WHEN)
    if kind == 5:
        return rng.randint(-5, 100)
    if kind == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(KEYS): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


KEYS = ["binding", "password", "concurrency", "worker", "timeout", "schedule", "type", "queue",
        "args", "retry", "reserve_for", "priority", "backtrace", "custom", "expires_in",
        "unique_for", "q1", *config.Config.__dataclass_fields__]
JOB_FIELDS = ["type", "queue", "args", "retry", "reserve_for", "priority", "backtrace", "custom",
              "at"]


def test_random_documents_at_start(tmp_path: Any) -> None:
    """Random values at random known places: loaded and consumable, or one clean line."""
    rng = random.Random(SEED + 1)
    path = str(tmp_path / "conf" / "conf.d" / "fuzz.toml")
    refused = loaded = 0
    for _ in range(400):
        text = ""
        for name in rng.sample(["faktory", "web", "faktory_fast", "throttles"], rng.randint(1, 3)):
            text += table(name, {rng.choice(KEYS): random_value(rng) for _ in range(2)})
        if rng.random() < 0.5:
            text += cron_entry(rng.choice(["* * * * *", random_value(rng)]),
                               **{rng.choice(JOB_FIELDS): random_value(rng)})
        case = Case("", text, None)
        try:
            cfg = load(tmp_path, case)
        except ConfigError as exc:
            refused += 1
            check_refusal(str(exc), case, path)
            continue
        loaded += 1
        check_consumable(cfg)
    assert refused > 100 and loaded > 20  # both ways taken: the checks and the consumers


def run_cli(tmp_path: Any, case: Case) -> subprocess.CompletedProcess:
    """The server started as users start it, on conf.d/fuzz.toml of the case."""
    path = write_conf(str(tmp_path), "fuzz.toml", "")
    with open(path, "wb") as fh:
        fh.write(case.content)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKTORY", "REDIS_"))}
    return subprocess.run([sys.executable, "-m", "faktory_fast", "-b", "127.0.0.1:0", "-w", ":0",
                           "-d", str(tmp_path / "db"), "-c", str(tmp_path / "conf")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=30)


def test_a_few_through_the_command(tmp_path: Any) -> None:
    """The real command on a sample of the refused cases: exit status 2, one line on stderr,
    nothing started."""
    rng = random.Random(SEED + 2)
    refused = [c for c in CASES if c.valid is False]
    sample = [c for c in refused if "99999999999999999999" in c.text][:2] + \
        [c for c in refused if c.key == "UTF-8"][:1] + rng.sample(refused, 4)
    for case in sample:
        done = run_cli(tmp_path, case)
        assert done.returncode == 2, (case, done.stdout, done.stderr)
        (line,) = done.stderr.splitlines()
        assert line.startswith("faktory-fast: error: ")
        check_refusal(line, case, str(tmp_path / "conf" / "conf.d" / "fuzz.toml"))
        assert not os.path.exists(tmp_path / "db" / "redis.sock")


BASE = """
[throttles]
kept = { concurrency = 2, timeout = 30 }

[[cron]]
  schedule = "@hourly"
  [cron.job]
    type = "Kept"
"""
