"""Every floating-point tolerance of the suite says where it comes from: a tolerance argument
(``atol``, ``rtol``, ``abs``, ``rel``), a library default (``pytest.approx(x)``,
``torch.allclose(a, b)``) or a comparison with a small literal (``err < 1e-5``) has a comment
on its lines or just above them (above a run of consecutive comparisons: for the run), or is
computed by ``tests/tolerances.py``. Library defaults
may instead be explained once, in a paragraph of the module docstring that starts with
``Tolerances:``."""

import ast
import io
import tokenize
from pathlib import Path

TESTS = Path(__file__).parent
CLOSE = {"approx", "allclose", "isclose", "assert_close", "assert_allclose"}
KEYS = {"atol", "rtol", "abs", "rel"}
HELPER = "tolerances"  # the module, imported as `import tolerances as tol` or by name


def comment_lines(text: str) -> set[int]:
    return {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(text).readline)
            if tok.type == tokenize.COMMENT}


def call_name(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")


def is_zero(node) -> bool:
    return isinstance(node, ast.Constant) and node.value == 0


def tolerances(tree: ast.AST):
    """(first line, last line, kind) of each tolerance in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and call_name(node) in CLOSE:
            keys = [k for k in node.keywords if k.arg in KEYS]
            if keys and all(is_zero(k.value) for k in keys):
                continue  # rtol=0, atol=0: exact equality, no tolerance
            yield node.lineno, node.end_lineno, "explicit" if keys else "default"
        elif isinstance(node, ast.Compare) and any(isinstance(o, (ast.Lt, ast.LtE))
                                                   for o in node.ops):
            for c in node.comparators:
                if isinstance(c, ast.Constant) and isinstance(c.value, float) \
                        and 0 < c.value < 1e-2:
                    yield node.lineno, node.end_lineno, "explicit"


def undocumented(path: Path) -> list[str]:
    text = path.read_text()
    tree = ast.parse(text)
    lines = text.splitlines()
    comments = comment_lines(text)
    doc = ast.get_docstring(tree) or ""
    defaults_explained = "Tolerances:" in doc
    found = list(tolerances(tree))
    # a comment above a run of consecutive comparisons speaks for the whole run
    grouped = {n for first, last, _ in found for n in range(first, last + 1)}
    bad = []
    for first, last, kind in found:
        span = " ".join(lines[first - 1:last])
        if HELPER in span or "tol." in span:
            continue
        above = first - 1  # the comment block (or run of comparisons) just above
        while above >= 1 and (lines[above - 1].lstrip().startswith("#") or above in grouped):
            above -= 1
        if any(n in comments for n in range(above, last + 1)):
            continue
        if kind == "default" and defaults_explained:
            continue
        bad.append(f"{path.name}:{first}: {lines[first - 1].strip()}")
    return sorted(bad, key=lambda b: int(b.split(":")[1]))


def test_every_tolerance_says_where_it_comes_from():
    bad = [b for p in sorted(TESTS.glob("*.py")) if p.name != Path(__file__).name
           for b in undocumented(p)]
    assert not bad, f"{len(bad)} tolerances without a comment:\n" + "\n".join(bad)


def test_the_check_finds_what_it_is_for(tmp_path):
    src = tmp_path / "t.py"
    src.write_text("import pytest\n"
                   "def test():\n"
                   "    assert 1.0 == pytest.approx(1.0, abs=1e-6)\n"          # caught
                   "    # float64 sum of 10 terms: 10 * 2**-53\n"
                   "    assert 1.0 == pytest.approx(1.0, abs=1e-12)\n"         # commented
                   "    x = 1\n"
                   "    assert err(1) < 1e-5\n"                                # caught
                   "    assert x == pytest.approx(y, abs=tol.gamma(3, 'float64'))\n"  # helper
                   "    assert x == pytest.approx(y)\n"                        # a default
                   "    torch.testing.assert_close(a, b, rtol=0, atol=0)\n")   # exact
    assert [b.split(":")[1] for b in undocumented(src)] == ["3", "7", "9"]
    src.write_text('"""Tolerances: approx defaults compare float64 formulas."""\n'
                   + "\n".join(src.read_text().splitlines()[1:]))
    assert [b.split(":")[1] for b in undocumented(src)] == ["3", "7"]
