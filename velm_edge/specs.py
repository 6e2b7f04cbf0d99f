"""The one parser for source and sink specs (``synth:?fps=15``, ``video:out.mp4?fps=30``, ``kiosk:?token=T``).

A spec is ``HEAD[?KEY=VALUE&...]``.  Each kind names its keys with their types once (a ``Kind``); the
same ``Kind`` gives the usage text that errors and ``--help`` print.  Unknown keys are refused with
the list of known ones, so a typo such as ``video:x.mp4?fsp=10`` never runs silently with the default.

Live sources and sinks import this module; it imports only the errors.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from velm_edge.errors import OptionError, cut, quoted

SCALARS = (int, float, str)


def scalar_type(hint) -> type:
    """A field's annotation as the one scalar its text converts to: int | None -> int; bool -> bool; anything else
    without a single scalar -> str."""
    if hint in (*SCALARS, bool):
        return hint
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 and args[0] in (*SCALARS, bool) else str


def boolean(text: str) -> bool:
    """``true``/``1``/``yes``/``on`` or ``false``/``0``/``no``/``off`` (any case) as a bool; ValueError otherwise."""
    value = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False,
             "off": False}.get(text.strip().lower())
    if value is None:
        raise ValueError(f"not a yes/no value: {quoted(text)}")
    return value


@dataclass(frozen=True)
class Key:
    """One ``?key=value`` option: its name, how its text becomes a value, and what it means."""
    name: str
    type: Callable[[str], Any]
    help: str = ""

    @classmethod
    def fields_of(cls, options) -> tuple[Key, ...]:
        """A key per field of the dataclass ``options``, typed by its annotation and helped by its metadata (so a
        request's ``?beam_size=3`` is the same option as ``--beam-size 3`` and ``DecodeOptions.beam_size``)."""
        hints = typing.get_type_hints(options)
        return tuple(cls(f.name, boolean if scalar_type(hints[f.name]) is bool else scalar_type(hints[f.name]),
                         f.metadata["help"]) for f in dataclasses.fields(options))


@dataclass(frozen=True)
class Kind:
    """A kind of source or sink: how it is written (``form``), what it is (``help``) and its ``keys``."""
    name: str
    form: str
    help: str
    keys: tuple[Key, ...] = ()

    def usage(self) -> str:
        """``form: help`` as one line."""
        return f"{self.form}: {self.help}"

    def options(self, spec: str, query: str) -> dict[str, Any]:
        """The typed options of ``spec``'s query string; unknown keys and bad values raise OptionError."""
        return parse_query(spec, query, self.keys)


def split(spec: str) -> tuple[str, str]:
    """``HEAD?QUERY`` -> (HEAD, QUERY); QUERY is empty without a ``?``."""
    head, _, query = spec.partition("?")
    return head, query


def parse_query(spec: str, query: str, keys: tuple[Key, ...]) -> dict[str, Any]:
    """``a=1&b=x`` -> {"a": 1, "b": "x"} with each value converted by its Key's type (the last of repeats wins)."""
    known = {k.name: k for k in keys}
    try:
        raw = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True, strict_parsing=bool(query)).items()}
    except ValueError:
        raise OptionError(f"{spec}: expected ?KEY=VALUE&KEY=VALUE after the '?', got {quoted(query)}") from None
    unknown = sorted(set(raw) - set(known))
    if unknown:
        listed = ", ".join(known) if known else "none (this kind takes no ?options)"
        named = ", ".join(cut(u, 40) for u in unknown[:5]) + (f" and {len(unknown) - 5} more" if unknown[5:] else "")
        raise OptionError(f"{spec}: unknown option{'s' if len(unknown) > 1 else ''} {named}; known: {listed}")
    values = {}
    for name, text in raw.items():
        key = known[name]
        try:
            values[name] = key.type(text)
        except ValueError:
            raise OptionError(f"{spec}: {name} must be {getattr(key.type, '__name__', 'valid')}, "
                              f"got {quoted(text)}") from None
    return values


def usage(kinds: tuple[Kind, ...], sep: str = "; ") -> str:
    """Every kind's ``form`` (for error messages and short help)."""
    return sep.join(k.form for k in kinds)


def describe(kinds: tuple[Kind, ...]) -> str:
    """Every kind's ``form: help``, for ``--help``."""
    return "; ".join(k.usage() for k in kinds)
