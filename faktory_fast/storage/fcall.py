"""The machinery of the store's operations: a ``Call`` is one Redis round trip (the command and
the decoder of its reply), an ``Fn`` a function of our Lua library (``lua/``) with the keys it
always touches; ``Op`` and ``Paged`` turn a method building a Call into an operation that
either store runs (``store.AsyncStore``: an awaitable; ``store.SyncStore``: the value). Also the
named result and the reply decoders the domains' operations (``ops/``) share.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from enum import IntEnum
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

PAGE = 500  # queues, workers... a Paged operation's call looks at (about: SCAN's COUNT)

T = TypeVar("T")
P = ParamSpec("P")


class Outcome(IntEnum):
    """What a function that changes one stored record did (``OUTCOME`` in the Lua library)."""

    GONE = 0  # there is no such record: nothing changed
    DONE = 1
    CHANGED = 2  # not the record the caller read (or it went meanwhile): nothing changed


class Call(Generic[T]):
    """One Redis round trip: the command and the decoder of its reply. ``replicated``: a write
    that waits for replicas when the server is told to (``--redis-wait-replicas``). ``keyed``:
    how many keys a plain command names, right after its name (an FCALL declares its own).
    The keys are the untagged names of ``keys``; the store that runs the call tags them
    (``with_tag``)."""

    __slots__ = ("args", "decode", "replicated", "keyed")

    def __init__(self, args: tuple[Any, ...], decode: Callable[[Any], T],
                 replicated: bool = False, keyed: int = 0) -> None:
        self.args = args
        self.decode = decode
        self.replicated = replicated
        self.keyed = keyed


def with_tag(args: tuple[Any, ...], tag: str, keyed: int = 0) -> tuple[Any, ...]:
    """A command's arguments with ``tag`` (``keys.layout_tag``) on each key it names: an
    FCALL's declared keys, or the ``keyed`` after its name. The one place where key names get
    their tag; on a single Redis (tag "") the arguments as they are."""
    if not tag:
        return args
    if args[0] == "FCALL":
        n = args[2]
        if not n:  # a function must name a key: the tag of its first one is its partition
            raise ValueError(f"{args[1]} called without keys")
        return (*args[:3], *[tag + k for k in args[3:3 + n]], *args[3 + n:])
    return (args[0], *[tag + k for k in args[1:1 + keyed]], *args[1 + keyed:])


class Fn(Generic[T]):
    """A function of our Lua library: its name, the keys it always touches (its KEYS, in the
    order the Lua function reads them, after the set it works on if the caller names one) and
    the decoder of its reply."""

    __slots__ = ("name", "keys", "decode")

    def __init__(self, name: str, fixed_keys: tuple[str, ...], decode: Callable[[Any], T]) -> None:
        self.name = name
        self.keys = fixed_keys
        self.decode = decode

    def call(self, item_keys: Sequence[str], *args: Any, lead: tuple[str, ...] = ()) -> Call[T]:
        """The FCALL with these arguments. ``lead``: the set it works on, when the caller names
        it (declared first); ``item_keys``: the keys it touches that depend on the arguments
        (a queue's list, a worker's hash...), declared after the fixed ones."""
        return Call(self.args(item_keys, args, lead), self.decode)

    def args(self, item_keys: Sequence[str], args: Sequence[Any],
             lead: tuple[str, ...] = ()) -> tuple[Any, ...]:
        """The FCALL's arguments, keys untagged (the store tags them: ``with_tag``)."""
        return ("FCALL", self.name, len(lead) + len(self.keys) + len(item_keys), *lead,
                *self.keys, *item_keys, *args)


class AsyncRunner:
    """A store whose operations return awaitables (``store.AsyncStore``)."""

    async def run(self, call: Call[T]) -> T:
        """The decoded reply of ``call``."""
        raise NotImplementedError

    async def run_pages(self, page: Callable[[str], Call[tuple[str, Any]]],
                        combine: Callable[[list[Any]], T]) -> T:
        """``combine`` of the parts of the pages ``page(cursor)`` gives, from cursor '0' until
        a page's reply says '0' again (``Paged``)."""
        parts, cursor = [], "0"
        while True:
            cursor, part = await self.run(page(cursor))
            parts.append(part)
            if cursor == "0":
                return combine(parts)


class SyncRunner:
    """A store whose operations return values (``store.SyncStore``)."""

    def run(self, call: Call[T]) -> T:
        """The decoded reply of ``call``."""
        raise NotImplementedError

    def run_pages(self, page: Callable[[str], Call[tuple[str, Any]]],
                  combine: Callable[[list[Any]], T]) -> T:
        """``AsyncRunner.run_pages``, returning the value."""
        parts, cursor = [], "0"
        while True:
            cursor, part = self.run(page(cursor))
            parts.append(part)
            if cursor == "0":
                return combine(parts)


class Op(Generic[P, T]):
    """One store operation, written once as a method that returns its ``Call``: on an
    ``AsyncRunner`` it returns an awaitable of the decoded reply, on a ``SyncRunner`` the
    decoded reply."""

    def __init__(self, build: Callable[Concatenate[Any, P], Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, store: None, owner: Any) -> Op[P, T]: ...
    @overload
    def __get__(self, store: AsyncRunner, owner: Any) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __get__(self, store: SyncRunner, owner: Any) -> Callable[P, T]: ...

    def __get__(self, store: Any, owner: Any) -> Any:
        if store is None:
            return self
        build, run = self.build, store.run

        def operation(*args: Any, **kwargs: Any) -> Any:
            return run(build(store, *args, **kwargs))
        return operation


class Paged(Generic[P, T]):
    """A store operation over a set that may be too big for one Redis call (no call may hold
    the Redis every client shares for long): ``build`` gives the Call of one page from a cursor
    ('0' first), whose reply decodes to (the next cursor, the page's part); pages are asked for
    until the cursor is '0' again, and ``combine`` makes the result of their parts (not one
    snapshot: each page is read at its own moment). On an ``AsyncRunner`` it returns an
    awaitable of the result, on a ``SyncRunner`` the result (their ``run_pages``)."""

    def __init__(self, combine: Callable[[list[Any]], T],
                 build: Callable[Concatenate[Any, str, P], Call[tuple[str, Any]]]) -> None:
        self.combine = combine
        self.build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, store: None, owner: Any) -> Paged[P, T]: ...
    @overload
    def __get__(self, store: AsyncRunner, owner: Any) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __get__(self, store: SyncRunner, owner: Any) -> Callable[P, T]: ...

    def __get__(self, store: Any, owner: Any) -> Any:
        if store is None:
            return self
        build, combine, run_pages = self.build, self.combine, store.run_pages

        def pages(*args: Any, **kwargs: Any) -> Any:
            return run_pages(lambda cursor: build(store, cursor, *args, **kwargs), combine)
        return pages


def paged(combine: Callable[[list[Any]], T]) -> Callable[
        [Callable[Concatenate[Any, str, P], Call[tuple[str, Any]]]], Paged[P, T]]:
    """``Paged`` as a decorator: ``@paged(combine)`` over the method building one page's Call."""
    def wrap(build: Callable[Concatenate[Any, str, P], Call[tuple[str, Any]]]) -> Paged[P, T]:
        return Paged(combine, build)
    return wrap


# -- reply decoders shared by the domains --------------------------------------------------------

def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def pairs(flat: Sequence[Any]) -> list[tuple[Any, Any]]:
    return list(zip(flat[0::2], flat[1::2]))


def as_int(reply: Any) -> int:
    return int(reply)


def cursor_and(reply: Any) -> tuple[str, Any]:
    """{cursor, value}: a page of work on a big set, and where the next one starts."""
    return as_text(reply[0]), reply[1]


def as_none(reply: Any) -> None:
    return None


def as_list(reply: Any) -> list[bytes]:
    return list(reply)


def as_outcome(reply: Any) -> Outcome:
    return OUTCOMES[reply]


def concat(parts: list[list[Any]]) -> list[Any]:
    return [x for part in parts for x in part]


def as_fields(flat: Any) -> dict[str, str]:
    return {as_text(k): as_text(v) for k, v in pairs(flat)}


OUTCOMES = {o.value: o for o in Outcome}
