"""Errors that end in a one-line message for a person, never a traceback."""


class QinglangError(Exception):
    """Base of every error the command line reports as one line."""


class ConfigError(QinglangError):
    """A setting or a data file is wrong; the message says what to fix."""
