"""The one error family: everything velm-edge and velm-convert raise on purpose is a ``VelmError``.

A ``VelmError`` is the user's to fix (a bad bundle, source, option or file) and its message says what
was expected and what was found; the command lines print it as one line and exit 1.  Anything else is
a bug and shows its traceback.  Each error also derives from the built-in exception it used to be, so
``except ValueError`` in older code keeps working.

Every room may import this module; it imports nothing.
"""


class VelmError(Exception):
    """Base of every error velm-edge raises on purpose."""


class OptionError(VelmError, ValueError):
    """An option, flag or spec the runtime does not accept: a wrong name, an unknown key, a value out of range."""


class BundleError(VelmError, ValueError):
    """A bundle that cannot be used: the message names the file, what was expected and what was found."""


class FrameError(VelmError, ValueError):
    """A frame or image file that cannot be captioned (undecodable, wrong dtype or shape)."""


class BackendError(VelmError, ImportError):
    """No TFLite interpreter package for the backend asked for: the message says what to install."""


class EdgeTPUError(VelmError, RuntimeError):
    """The Edge TPU was asked for explicitly and cannot be used."""


class SourceError(VelmError, RuntimeError):
    """A source that cannot be opened or stopped delivering frames."""


class SinkError(VelmError, ValueError):
    """A sink that cannot work here (a missing program, package or display) or failed while running."""


def quoted(value, limit: int = 80) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters: a message quotes what it was given, never
    all of it (a 5 MB field must not come back in a 5 MB error)."""
    return cut(repr(value), limit)


def cut(text: str, limit: int = 80) -> str:
    """``text`` as it is, or its first ``limit`` characters and how long it was."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"
