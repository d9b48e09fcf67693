"""Localisation as Faktory does it.

Locale files are ``static/locales/<code>.yml`` in Faktory's format: a ``<code>:`` header line and
indented ``Key: value`` lines (``%{name}`` marks a value filled in by the page; values may be
quoted). They are parsed once, when the app starts; a key a locale lacks falls back to English.

The locale of a request is the ``faktory_locale`` cookie (set by the selector on ``/debug``), else
the first ``Accept-Language`` entry that has a locale file, or whose base language has one
(``sv-se`` -> ``sv``), else English.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import falcon

LOCALES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "locales")
COOKIE = "faktory_locale"
DEFAULT = "en"
RTL_LANGUAGES = frozenset({"ar", "fa", "he", "ur"})

_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_VAR = re.compile(r"%\{(\w+)\}")
_CODE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})?")


def parse(text: str, code: str) -> dict[str, str]:
    """The ``Key: value`` entries of one locale file (ValueError for any other kind of line)."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not line[0].isspace():  # the "<code>:" header (an end-of-line comment is allowed)
            if stripped.split("#", 1)[0].strip() != code + ":" or entries:
                raise ValueError(f"{code}.yml:{number}: expected the header '{code}:' first")
            continue
        key, sep, value = stripped.partition(":")
        if not sep or not _KEY.fullmatch(key):
            raise ValueError(f"{code}.yml:{number}: expected 'Key: value'")
        if key in entries:
            raise ValueError(f"{code}.yml:{number}: {key} given twice")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        entries[key] = value
    return entries


def _fill(text: str, values: Mapping[str, Any]) -> str:
    return _VAR.sub(lambda m: str(values[m[1]]) if m[1] in values else m[0], text)


@dataclass(frozen=True, slots=True)
class Locale:
    """One language: its strings (English filled in where it has none)."""

    code: str
    strings: Mapping[str, str]

    @property
    def name(self) -> str:
        """The language's name in that language (for the selector)."""
        return self.strings.get("LanguageName", self.code)

    @property
    def direction(self) -> str:
        return "rtl" if self.code.split("-")[0] in RTL_LANGUAGES else "ltr"

    def t(self, key: str, **values: Any) -> str:
        """The text for ``key`` with its ``%{name}`` parts filled in (the key itself if unknown)."""
        text = self.strings.get(key, key)
        return _fill(text, values) if values else text


class Catalog:
    """Every locale, loaded once; picks the one a request asks for."""

    def __init__(self, tables: Mapping[str, Mapping[str, str]]) -> None:
        english = dict(tables[DEFAULT])
        self.locales = {code: Locale(code, {**english, **table}) for code, table in tables.items()}
        self.default = self.locales[DEFAULT]

    @classmethod
    def load(cls, directory: str = LOCALES_DIR) -> Catalog:
        tables = {}
        for filename in sorted(os.listdir(directory)):
            code, ext = os.path.splitext(filename)
            if ext == ".yml" and _CODE.fullmatch(code):
                with open(os.path.join(directory, filename), encoding="utf-8") as f:
                    tables[code] = parse(f.read(), code)
        return cls(tables)

    def choices(self) -> list[Locale]:
        return [self.locales[code] for code in sorted(self.locales)]

    def find(self, tag: str) -> Locale | None:
        """The locale for a language tag (``pt-BR``), or for its base language (``pt``)."""
        tag = tag.strip().lower().replace("_", "-")
        return self.locales.get(tag) or self.locales.get(tag.split("-")[0])

    def negotiate(self, cookie: str | None, accept_language: str | None) -> Locale:
        if cookie:
            chosen = self.find(cookie)
            if chosen:
                return chosen
        for tag in accepted(accept_language or ""):
            chosen = self.find(tag)
            if chosen:
                return chosen
        return self.default


def accepted(header: str) -> Iterable[str]:
    """The language tags of an ``Accept-Language`` header, most wanted first (q=0 dropped)."""
    ranked = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        tag = tag.strip()
        if tag and tag != "*" and quality > 0:
            ranked.append((-quality, position, tag))
    return [tag for _, _, tag in sorted(ranked)]


class Localisation:
    """Falcon middleware: ``req.context.locale`` for every request; ``Content-Language``."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.locale = self.catalog.negotiate(req.cookies.get(COOKIE),
                                                    req.get_header("Accept-Language"))

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        if req.path.startswith("/static/"):
            return
        resp.set_header("Content-Language", locale_of(req, self.catalog).code)
        resp.append_header("Vary", "Accept-Language, Cookie")


def locale_of(req: falcon.Request, catalog: Catalog) -> Locale:
    return getattr(req.context, "locale", None) or catalog.default
