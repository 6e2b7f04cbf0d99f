"""Command-line flags the way people expect them, for both ``velm-edge`` and ``velm-convert``.

- Flags are kebab-case (``--max-frames``); the old underscore spellings (``--max_frames``) still work
  as hidden aliases, so no script breaks.
- Each default is shown once: ``HelpFormatter`` adds "(default: X)" only when the help text does not
  already say "(default ...)", and never for an unset (None) or off (False) default.
- Flags of an options dataclass come from its fields: the help is each field's
  ``field(metadata={"help": ...})`` (and ``"choices"``, ``"flag"`` for another flag name), read at
  run time, so it works from ``.pyc`` files and a field without help is an error, not a missing flag.
- ``run_command``: a ``VelmError`` or ``OSError`` (the user's to fix) is one line on stderr and exit code
  1; anything else is a bug and shows its traceback; ``--debug`` shows the traceback of every error.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Callable

from velm_edge.errors import VelmError
from velm_edge.specs import scalar_type


class HelpFormatter(argparse.HelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.help is argparse.SUPPRESS or "(default" in text.lower():
            return text
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return text  # unset or off: nothing worth printing (0 and 0.0 are printed)
        if action.option_strings or action.nargs in ("?", "*"):
            return f"{text} (default: %(default)s)"
        return text


def add_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup, name: str, **kw) -> argparse.Action:
    """``--name`` in kebab-case, plus the underscore spelling as a hidden alias when it differs."""
    bare = name.lstrip("-")
    dest = kw.pop("dest", bare.replace("-", "_"))
    kebab, snake = "--" + bare.replace("_", "-"), "--" + bare.replace("-", "_")
    action = parser.add_argument(kebab, dest=dest, **kw)
    if snake != kebab:
        hidden = {k: v for k, v in kw.items() if k != "help"}
        parser.add_argument(snake, dest=dest, help=argparse.SUPPRESS, **hidden)
    return action


def add_fields(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls, skip: tuple[str, ...] = (),
               defaults: dict | None = None) -> None:
    """A flag per field of the dataclass ``cls`` (except ``skip``), typed from its annotation, helped by its
    metadata; ``defaults`` overrides a field's default on the command line (e.g. None for "decide later")."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        meta = f.metadata
        if "help" not in meta:
            raise TypeError(f"{cls.__name__}.{f.name} has no help: give it field(metadata={{'help': ...}}) or skip it")
        default = (defaults or {}).get(f.name, f.default if f.default is not dataclasses.MISSING else None)
        kind = scalar_type(hints[f.name])
        kw = {"default": default, "help": meta["help"].replace("%", "%%")}
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hints[f.name]) is tuple:  # tuple[str, ...]: the flag repeats
            kw.update(action="append", default=None, metavar=meta.get("metavar", f.name.upper()))
        else:
            kw.update(type=kind, metavar=meta.get("metavar", meta.get("flag", f.name).upper()))
            if "choices" in meta:
                kw["choices"] = meta["choices"]
                del kw["metavar"]
        add_flag(parser, meta.get("flag", f.name), dest=f.name, **kw)


def _tuple_fields(cls) -> set[str]:
    hints = typing.get_type_hints(cls)
    return {f.name for f in dataclasses.fields(cls) if typing.get_origin(hints[f.name]) is tuple}


def from_args(cls, args: argparse.Namespace, **override):
    """An instance of ``cls`` from the parsed flags ``add_fields`` added (fields not on the command line keep
    their defaults); ``override`` wins."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}  # repeated flags
    given = {k: v for k, v in given.items() if v is not None or k not in _tuple_fields(cls)}
    return cls(**{**given, **override})


def run_command(prog: str, command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one subcommand under the error policy above (``args.command`` names it, ``args.debug`` is --debug)."""
    try:
        return command(args)
    except (VelmError, OSError) as e:
        if args.debug:
            raise
        print(f"{prog} {args.command}: error: {e}", file=sys.stderr)
        return 1
