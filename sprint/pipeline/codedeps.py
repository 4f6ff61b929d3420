"""Which library files each pipeline stage runs: the import closure of its CLI command, read from the source.

A stage runs ``sprint <command>``: the package's ``__init__``, the command line (``pipeline.cli``) and the command's
function in ``pipeline.commands``, then every module that function imports, with everything those import in turn
(module-level and inside functions: a conservative closure; importing ``sprint.a.b`` also runs ``sprint/a/__init__``).
The Snakemake rules take these files as inputs and ``dvc.yaml`` lists them as dependencies (a test keeps it equal
to this), so a library change reruns exactly the stages that run the changed code, and a new import is picked up
without anyone editing a list.

    python -m sprint.pipeline.codedeps prune               # the files, one per line
    python -m sprint.pipeline.codedeps --write-dvc dvc.yaml  # bring dvc.yaml's code deps up to date
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent

# Pipeline stage (Snakemake rule / DVC stage name) -> the `sprint` command it runs (a function in commands.py).
STAGE_COMMANDS = {
    "datasets": "datasets", "model": "embedded_model", "calibrate": "calibrate", "profile": "profile", "prune": "prune",
    "prune_at_setting": "prune", "evaluate": "evaluate", "evaluate_dense": "evaluate", "speedup": "speedup",
    "report": "report", "export": "export",
}
COMMANDS = "pipeline.commands"
ENTRY = ("__init__", "pipeline.cli", COMMANDS)
# DVC stage (dvc.yaml) -> the pipeline stage whose files it depends on, where the names differ.
DVC_STAGES = {"evaluate-dense": "evaluate_dense", "prune-weights": "prune_at_setting", "evaluate-weights": "evaluate",
              "prune-slicing": "prune_at_setting", "evaluate-slicing": "evaluate",
              "prune-structured": "prune_at_setting", "evaluate-structured": "evaluate"}
# Methods of sprint.methods.Method that import a pruner module by name: a module calling them runs the pruners.
REGISTRY_LOADERS = {"pruner_class", "admissible"}


def _path(module: str) -> Path | None:
    """The source file of a module name relative to the package ("measure.stats", "methods", "__init__")."""
    if module == "__init__":
        return PACKAGE / "__init__.py"
    base = PACKAGE.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _with_parents(module: str) -> set[str]:
    """A module and the packages Python runs to import it: "methods.sprint" -> {"methods", "methods.sprint"}."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1) if _path(".".join(parts[:i]))}


def _sprint_imports(nodes: list[ast.AST]) -> set[str]:
    """Modules of the package imported anywhere in ``nodes`` (``from sprint.x.y import``, ``from sprint.x import y``,
    ``import sprint.x``), as module names relative to the package, their parent packages included."""
    found: set[str] = set()
    for node in (n for top in nodes for n in ast.walk(top)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "sprint" or node.module.startswith("sprint."):
                base = node.module.removeprefix("sprint").lstrip(".")
                if base:
                    found |= _with_parents(base)
                # `from sprint.x import y` where y is a module
                found |= {f"{base}.{a.name}".lstrip(".") for a in node.names if _path(f"{base}.{a.name}".lstrip("."))}
        elif isinstance(node, ast.Import):
            found |= {m for a in node.names if a.name.startswith("sprint.") for m in _with_parents(a.name[7:])}
    return found


@cache
def _tree(module: str) -> ast.Module:
    path = _path(module)
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _module_imports(module: str) -> set[str]:
    tree = _tree(module)
    if module == COMMANDS:  # the glue: each command's imports are its own, not the other commands'
        return _sprint_imports([n for n in tree.body if not isinstance(n, ast.FunctionDef)])
    if module == "__init__":  # lazy exports (PEP 562): nothing is imported until a name is used
        return set()
    found = _sprint_imports([tree])
    if module not in ("methods.method", "methods.registry") and any(  # they define the loaders, not call them
            isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in REGISTRY_LOADERS
            for n in ast.walk(tree)):  # builds pruners through the registry, which imports their modules by name
        from sprint.methods import REGISTRY

        modules = (m.pruner.split(":")[0] for m in REGISTRY.values())
        found |= {m for name in modules if name.startswith("sprint.") for m in _with_parents(name[7:])}
    return found


def _command_imports(command: str) -> set[str]:
    tree = _tree(COMMANDS)
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    if command not in funcs:
        raise KeyError(f"sprint/pipeline/commands.py has no command function {command!r}")
    called = {n.func.id for n in ast.walk(funcs[command]) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    helpers = [funcs[name] for name in called if name in funcs and name != command]  # e.g. mlflow_metrics
    return _sprint_imports([funcs[command], *helpers])


def module_closure(command: str) -> list[str]:
    """Package modules ``sprint <command>`` runs (entry modules and the packages they sit in included), sorted."""
    seen: set[str] = set()
    todo = [*ENTRY, "pipeline", *_command_imports(command)]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(_module_imports(module) - seen)
    return sorted(seen)


def stage_files(stage: str, root: str = "sprint") -> list[str]:
    """The library files of pipeline stage ``stage``, as paths under ``root`` (the package folder)."""
    return sorted(f"{root}/{_path(m).relative_to(PACKAGE).as_posix()}" for m in module_closure(STAGE_COMMANDS[stage]))


def dvc_stage_files(dvc_stage: str) -> list[str]:
    """The library files a dvc.yaml stage depends on."""
    return stage_files(DVC_STAGES.get(dvc_stage, dvc_stage))


def write_dvc_deps(path: str | Path = "dvc.yaml") -> bool:
    """Rewrite the ``sprint/`` lines of every stage's deps in ``path`` (those after its ``workflow/rules/*.smk``
    line) to the stage's files; True when the file changed.  Run after a module is added, moved or imports anew:
    ``python -m sprint.pipeline.codedeps --write-dvc dvc.yaml``."""
    path = Path(path)
    lines, out, stage = path.read_text(encoding="utf-8").splitlines(), [], None
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":"):
            stage = line.strip()[:-1]
        stripped = line.strip()
        if stage and stripped.startswith("- workflow/rules/") and stripped.endswith(".smk"):
            while i < len(lines) and lines[i].strip().startswith("- sprint/"):
                i += 1
            indent = line[:len(line) - len(line.lstrip())]
            out += [f"{indent}- {f}" for f in dvc_stage_files(stage)]
    text = "\n".join(out) + "\n"
    changed = text != path.read_text(encoding="utf-8")
    if changed:
        path.write_text(text, encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--write-dvc"]:
        target = args[1] if len(args) > 1 else "dvc.yaml"
        print(f"{target}: {'rewritten' if write_dvc_deps(target) else 'up to date'}")
        return 0
    for stage in args or sorted(STAGE_COMMANDS):
        print("\n".join(stage_files(stage)) if args else f"{stage}: {' '.join(stage_files(stage))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
