"""The one exception type for problems a user can fix (a file, a key, a value)."""


class SprintError(ValueError):
    """Bad input: printed by the CLI as one line naming the file / key and what was expected (exit status 2).

    ``user_fixable`` marks such errors; the carried modeling code (``sprint.model.modeling_sprint``), which must not
    import this package, marks its own ``UnsupportedModelError`` the same way, so the CLI needs to import neither."""

    user_fixable = True
