"""The pruning methods' names, importable without the pruners (the CLI and the workflow read them)."""

METHODS = ("sprint", "sprint-l", "sprint-t", "sprint-e", "shortgpt", "sleb", "blockpruner")
