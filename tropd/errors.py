"""Errors a user can fix. The CLI prints them as one line and exits 2. They live here, below every other
module, so that config, the registry and the methods can all raise them without importing each other."""


class UserError(RuntimeError):
    """Bad input (missing file, malformed data, incompatible models); message is one line."""


class ConfigError(ValueError):
    """A bad config value; the message is one line naming the key."""
