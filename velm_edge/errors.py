"""Errors the runtime raises on purpose (the rest are bugs)."""


class BundleError(ValueError):
    """A bundle that cannot be used: the message names the file, what was expected and what was found."""
