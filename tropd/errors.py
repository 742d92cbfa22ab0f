"""Errors a user can fix. The CLI prints them as one line and exits 2."""


class UserError(RuntimeError):
    """Bad input (missing file, malformed data, incompatible models); message is one line."""
