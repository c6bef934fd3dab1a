"""The exceptions that the CLI turns into one clear line and a non-zero exit.

Anything that a user can cause (bad config, unreachable database, duplicate tenant) raises a
subclass of `OptibridgeError` whose message is written for that user; everything else is a bug
and is reported as such.
"""


class OptibridgeError(Exception):
    """An error whose message is fit to show a user as it is."""

    exit_code: int = 1


class ConfigError(OptibridgeError):
    """The configuration (file, environment, flags) is missing, malformed or invalid."""

    exit_code = 2


class DatabaseUnavailableError(OptibridgeError):
    """The database cannot be reached or started."""

    exit_code = 3


class NotFoundError(OptibridgeError):
    """A named object (tenant, channel, ...) does not exist."""

    exit_code = 4


class ConflictError(OptibridgeError):
    """A named object already exists, or the change would contradict existing state."""

    exit_code = 5


class SecretKeyError(OptibridgeError):
    """The key that encrypts secrets at rest is missing, malformed or does not match the data."""

    exit_code = 6
