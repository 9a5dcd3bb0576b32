"""The one base class of every error cclnn reports to a user (one line, names the culprit)."""


class CclnnError(Exception):
    """A user-facing error: the CLI prints its message as one line and exits with status 2."""
