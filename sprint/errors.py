"""The one exception type for problems a user can fix (a file, a key, a value)."""


class SprintError(ValueError):
    """Bad input: printed by the CLI as one line naming the file / key and what was expected (exit status 2)."""
