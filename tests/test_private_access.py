"""No private SDK access in the app's code, except in the one module that says it has it.

The product uses public APIs and documented extension points only (BRIEF: no imports of
`_private` modules, no monkeypatching), so an SDK upgrade cannot break it silently.
shared/table_batch.py is the single exception (the SDK's transaction builder, for CPU), and
tests/test_table_batch_differential.py holds it to the SDK's own behaviour.

What counts as private access, found by reading the source (ast):
- importing a module with a `_name` part outside the app (`azure.data.tables._table_batch`),
  or importing a `_name` from a module outside the app;
- reading `obj._name` where `_name` is not an attribute the app itself defines (on `self`,
  on a class, or as a module-level name): an SDK object's private attribute;
- `getattr`/`setattr`/`hasattr` with a literal `_name` the app does not define.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ALLOWED = {"shared/table_batch.py"}
APP_PACKAGES = {"shared", "function_app"}


def _sources() -> dict[str, ast.Module]:
    files = [REPO / "function_app.py", *sorted((REPO / "shared").rglob("*.py"))]
    return {str(f.relative_to(REPO)): ast.parse(f.read_text(), str(f)) for f in files}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_names(trees: dict[str, ast.Module]) -> set[str]:
    """Every `_name` the app defines: attributes set on self/cls, class and module names,
    functions and methods, and names its modules import from each other."""
    names: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
                APP_PACKAGES
            ):
                names.update(alias.asname or alias.name for alias in node.names)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.attr for t in targets if isinstance(t, ast.Attribute))
            elif isinstance(node, ast.ClassDef):
                names.add(node.name)
    # __slots__ entries are attributes too.
    for tree in trees.values():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets)
                and isinstance(node.value, ast.Tuple | ast.List)
            ):
                names.update(
                    e.value
                    for e in node.value.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                )
    return {n for n in names if _private(n)}


def private_access(path: str, tree: ast.Module, own: set[str]) -> list[str]:
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] not in APP_PACKAGES and any(_private(p) for p in parts):
                    found.append(f"{path}:{line}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module or ""
            parts = module.split(".")
            if parts[0] in APP_PACKAGES:
                continue
            if any(_private(p) for p in parts):
                found.append(f"{path}:{line}: from {module} import ...")
            found.extend(
                f"{path}:{line}: from {module} import {alias.name}"
                for alias in node.names
                if _private(alias.name)
            )
        elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own:
            found.append(f"{path}:{line}: ._{node.attr[1:]}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "setattr", "hasattr", "delattr"}
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
            and node.args[1].value not in own
        ):
            found.append(f"{path}:{line}: {node.func.id}(..., {node.args[1].value!r})")
    return found


def test_no_private_sdk_access_outside_the_declared_module() -> None:
    trees = _sources()
    own = _own_names(trees)
    found = [
        hit
        for path, tree in trees.items()
        if path not in ALLOWED
        for hit in private_access(path, tree, own)
    ]
    assert found == [], "private SDK access outside shared/table_batch.py:\n" + "\n".join(found)


def test_the_declared_module_says_so_and_is_what_the_check_would_catch() -> None:
    """The check is not blind: it finds table_batch's accesses; and the module's docstring
    names it as the only module allowed them."""
    trees = _sources()
    own = _own_names(trees)
    hits = private_access("shared/table_batch.py", trees["shared/table_batch.py"], own)
    assert any("azure.data.tables._table_batch" in hit for hit in hits)
    assert any("._primary_hostname" in hit for hit in hits)
    doc = ast.get_docstring(trees["shared/table_batch.py"]) or ""
    assert "ONLY MODULE IN THE PROJECT ALLOWED PRIVATE SDK ACCESS" in doc


def test_the_check_catches_each_kind_of_access() -> None:
    sample = ast.parse(
        "import azure.core._x\n"
        "from azure.data.tables._models import A\n"
        "from azure.core.pipeline import _tools\n"
        "client._client.send()\n"
        "getattr(client, '_config')\n"
        "self._mine = 1\n"
        "x = self._mine\n"
        "from shared._helpers import y\n"
    )
    own = {"_mine"}
    hits = private_access("sample.py", sample, own)
    assert len(hits) == 5, hits
