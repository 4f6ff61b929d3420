"""Which library files each pipeline stage runs: the import closure of its CLI command, read from the source.

A stage runs ``sprint <command>``: the package's ``__init__``, ``cli`` and ``commands`` modules, and every module
the command's function in ``commands`` imports, with everything those import in turn (module-level and inside
functions: a conservative closure).  The Snakemake rules take these files as inputs and ``dvc.yaml`` lists them as
dependencies (a test keeps it equal to this), so a library change reruns exactly the stages that run the changed
code, and a new import is picked up without anyone editing a list.

    python -m sprint.codedeps prune        # the files, one per line
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent

# Pipeline stage (Snakemake rule / DVC stage name) -> the `sprint` command it runs (a function in commands.py).
STAGE_COMMANDS = {
    "datasets": "datasets", "model": "embedded_model", "calibrate": "calibrate", "profile": "profile", "prune": "prune",
    "prune_at_setting": "prune", "evaluate": "evaluate", "evaluate_dense": "evaluate", "speedup": "speedup",
    "report": "report",
}
ENTRY = ("__init__", "cli", "commands")
# Methods of sprint.methods.Method that import a pruner module by name: a module calling them runs the pruners.
REGISTRY_LOADERS = {"pruner_class", "admissible"}


def _sprint_imports(nodes: list[ast.AST]) -> set[str]:
    """Modules of the package imported anywhere in ``nodes`` (``from sprint.x import``, ``from sprint import x``,
    ``import sprint.x``), as module names relative to the package."""
    found: set[str] = set()
    for node in (n for top in nodes for n in ast.walk(top)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "sprint":
                found |= {a.name for a in node.names if (PACKAGE / f"{a.name}.py").is_file()}
            elif node.module.startswith("sprint."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("sprint.")}
    return found


@cache
def _tree(module: str) -> ast.Module:
    path = PACKAGE / f"{module}.py"
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _module_imports(module: str) -> set[str]:
    tree = _tree(module)
    if module == "commands":  # the glue: each command's imports are its own, not the other commands'
        return _sprint_imports([n for n in tree.body if not isinstance(n, ast.FunctionDef)])
    if module == "__init__":  # lazy exports (PEP 562): nothing is imported until a name is used
        return set()
    found = _sprint_imports([tree])
    if module != "methods" and any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in REGISTRY_LOADERS
           for n in ast.walk(tree)):  # builds pruners through the registry, which imports their modules by name
        from sprint.methods import REGISTRY

        modules = (m.pruner.split(":")[0] for m in REGISTRY.values())
        found |= {name.split(".")[1] for name in modules if name.startswith("sprint.")}  # not other packages'

    return found


def _command_imports(command: str) -> set[str]:
    tree = _tree("commands")
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    if command not in funcs:
        raise KeyError(f"sprint/commands.py has no command function {command!r}")
    called = {n.func.id for n in ast.walk(funcs[command]) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    helpers = [funcs[name] for name in called if name in funcs and name != command]  # e.g. mlflow_metrics
    return _sprint_imports([funcs[command], *helpers])


def module_closure(command: str) -> list[str]:
    """Package modules ``sprint <command>`` runs (entry modules included), sorted."""
    seen: set[str] = set()
    todo = [*ENTRY, *_command_imports(command)]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(_module_imports(module) - seen)
    return sorted(seen)


def stage_files(stage: str, root: str = "sprint") -> list[str]:
    """The library files of pipeline stage ``stage``, as paths under ``root`` (the package folder)."""
    return [f"{root}/{module}.py" for module in module_closure(STAGE_COMMANDS[stage])]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for stage in args or sorted(STAGE_COMMANDS):
        print("\n".join(stage_files(stage)) if args else f"{stage}: {' '.join(stage_files(stage))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
