"""A hash of the library code a workflow script imports (transitively), blind to comments,
docstrings and formatting.

Snakemake reruns a ``script:`` job when the script file changes, but not when a library
module it imports changes; rules pass this hash as a param so that they do. Each file is
hashed as its syntax tree with docstrings removed (``ast.dump`` without positions), so a
comment, a docstring or a reformatting reruns nothing, and a stage reruns only when code it
actually imports changes what it does.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = "ilmoco"
PACKAGE_DIR = Path(__file__).resolve().parent


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for b in node.body for n in ast.walk(b)}
    return skip


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_checking_only(tree)
    mods = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == PACKAGE:
                mods.add(node.module)
                mods |= {f"{node.module}.{a.name}" for a in node.names}
    return mods


def _module_file(name: str) -> Path | None:
    rel = Path(*name.split(".")[1:])
    for cand in (PACKAGE_DIR / rel.with_suffix(".py"), PACKAGE_DIR / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


@cache
def module_closure(script: str) -> tuple[Path, ...]:
    """Library files imported by ``script``, directly or through other library modules."""
    seen: set[Path] = set()
    todo = [Path(script)]
    while todo:
        for name in _imports(todo.pop()):
            parts = name.split(".")
            for i in range(2, len(parts) + 1):  # parent packages run their __init__ too
                f = _module_file(".".join(parts[:i]))
                if f is not None and f not in seen:
                    seen.add(f)
                    todo.append(f)
    return tuple(sorted(seen))


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        scope = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        if isinstance(node, scope) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return tree


def normalized_source(path: Path) -> str:
    """The code of ``path`` without comments, docstrings and formatting."""
    return _normalized(Path(path).read_text(), str(path))


# Keyed by the text itself: building the DAG hashes the same ~40 files for each of its
# ~115 jobs, and parsing them each time was 80 % of a dry run (11 of 14 s, measured); a
# file edited while the process runs has another text and is parsed again.
@cache
def _normalized(text: str, filename: str) -> str:
    return ast.dump(_strip_docstrings(ast.parse(text, filename=filename)),
                    include_attributes=False)


def code_hash(script, *modules: str) -> str:
    """Hash of ``script``, the library modules it imports, and ``modules`` (dotted names of
    modules a job imports by path, e.g. the reader of its dataset's format or the model of
    its base) with theirs."""
    files = {Path(script), *module_closure(str(script))}
    for name in modules:
        f = _module_file(name)
        if f is None:
            raise ValueError(f"no library module {name!r}")
        files |= {f, *module_closure(str(f))}
    h = hashlib.sha256()
    for f in sorted(files):
        h.update((f.relative_to(PACKAGE_DIR).as_posix() if f.is_relative_to(PACKAGE_DIR)
                  else f.name).encode())
        h.update(normalized_source(f).encode())
    return h.hexdigest()[:12]
