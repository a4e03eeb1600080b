"""User-facing errors.

Everything a user can get wrong (a missing model folder, a knob out of range, mismatched
vocabularies) raises :class:`W2SError` with a one-line message; the CLI and the server turn it
into a clean error instead of a traceback. Internal bugs stay ordinary exceptions.
"""


class W2SError(ValueError):
    """A problem with the user's input, reported as one readable line."""
