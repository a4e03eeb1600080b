"""User-facing errors.

Everything a user can get wrong (a missing model folder, a knob out of range, mismatched
vocabularies) raises :class:`W2SError` with a one-line message; the CLI and the server turn it
into a clean error instead of a traceback. Internal bugs stay ordinary exceptions.
"""

from __future__ import annotations

from collections.abc import Mapping


class W2SError(ValueError):
    """A problem with the user's input, reported as one readable line."""


class FieldError(W2SError):
    """A bad value of one named field, as ``<field path> <problem>``: ``field`` is its path
    (``w``, ``sampling.top_p``, ``guide.weights[1]``) and ``problem`` what is wrong with it
    (``must be >= 1, got 0``), so every face reports the same field the same way (the server
    puts the path in OpenAI's ``param``, a config its key path, the CLI the flag)."""

    def __init__(self, field: str, problem: str, sep: str = " ") -> None:
        self.field, self.problem, self.sep = field, problem, sep
        super().__init__(f"{field}{sep}{problem}")

    def named(self, names: Mapping[str, str]) -> str:
        """This error in a face's words: its field path renamed by the face's one rename map
        (the CLI's flags, OpenAI's names, a config's keys); a path it lacks stays as it is."""
        try:
            name = names[self.field]  # a map may derive names (``__missing__``)
        except KeyError:
            name = self.field
        return f"{name}{self.sep}{self.problem}"

    def at(self, prefix: str) -> FieldError:
        """The same error one level down: ``at("sampling.")`` of ``top_p ...`` is
        ``sampling.top_p ...``."""
        return FieldError(f"{prefix}{self.field}", self.problem, self.sep)


class FlagNames(dict):
    """A command line's rename map from field paths to its flags: a path that is a plain name
    is ``--name-with-dashes`` unless given here (``FlagNames(guide_terms="--guide-term")``)."""

    def __missing__(self, field: str) -> str:
        return "--" + field.replace("_", "-") if field.isidentifier() else field
