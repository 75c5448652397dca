"""The code's shape, checked: module and function sizes, and how type checks are silenced.

- No module over 400 lines in the apps and gateway_project/ (migrations aside), nor in
  tests/.
- No function over 60 lines on the proxy's path (PROXY_PATH below): the request's stages
  stay small enough to read in one screen.
- Every `# type: ignore` names its error code and says why, as
  `# type: ignore[code]  # reason`, so mypy's `warn_unused_ignores` and a reader can both
  tell whether it is still needed; and there is none where mypy does not look (tests/,
  bench/).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("gateway_project", "providers", "tenants", "audit", "billing", "routing")

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# The proxy's path: directories (trailing /), files, or globs (audit/writer* matches a
# module or a package). The modules of the write side that live beside them (admin, DRF,
# services, models, ...) are not on the path; see WRITE_SIDE.
PROXY_PATH = (
    "routing/proxy/",
    "routing/cache/",
    "routing/snapshot.py",
    "routing/endpoints.py",
    "routing/metrics/recording.py",
    "routing/live/feed.py",  # request_finished() offers every row to it
    "routing/live/events.py",
    "tenants/auth.py",
    "tenants/snapshot.py",
    "tenants/policy.py",
    "billing/admission.py",
    "billing/counters.py",
    "billing/rules.py",
    "providers/",
    "audit/writer*",
    "audit/redaction*",
    "gateway_project/asgi.py",
    "gateway_project/lib/",
)
WRITE_SIDE = frozenset(
    {
        "admin.py",
        "api.py",
        "apps.py",
        "models.py",
        "rest.py",
        "selectors.py",
        "serializers.py",
        "services.py",
        "tasks.py",
    }
)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def app_modules() -> Iterator[Path]:
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" not in path.relative_to(ROOT).parts:
                yield path


def suite_modules() -> Iterator[Path]:
    yield from sorted((ROOT / "tests").rglob("*.py"))


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def long_modules(paths: Iterator[Path]) -> dict[str, int]:
    return {rel(path): n for path in paths if (n := line_count(path)) > MAX_MODULE_LINES}


def proxy_path_modules() -> tuple[list[Path], list[str]]:
    """The proxy path's modules, and the PROXY_PATH entries that matched none."""
    found: set[Path] = set()
    unmatched = []
    for entry in PROXY_PATH:
        if entry.endswith("/"):
            matches = sorted((ROOT / entry).rglob("*.py")) if (ROOT / entry).is_dir() else []
        else:
            matches = []
            for match in sorted(ROOT.glob(entry)):
                matches += sorted(match.rglob("*.py")) if match.is_dir() else [match]
        if not matches:
            unmatched.append(entry)
        for path in matches:
            parts = path.relative_to(ROOT).parts
            if path.name not in WRITE_SIDE and not {"migrations", "management"} & set(parts):
                found.add(path)
    return sorted(found), unmatched


def functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.AST]]:
    """(qualified name, node) of every function, nested ones and methods included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + node.name, node
            yield from functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, f"{prefix}{node.name}.")
        else:
            yield from functions(node, prefix)


def function_length(node: ast.AST) -> int:
    # From the `def` line (decorators excluded) to the last line of the body.
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    assert node.end_lineno is not None
    return node.end_lineno - node.lineno + 1


def long_functions(paths: list[Path]) -> dict[str, int]:
    found = {}
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, node in functions(tree):
            if (n := function_length(node)) > MAX_FUNCTION_LINES:
                found[f"{rel(path)}::{name}"] = n
    return found


TYPE_IGNORE = re.compile(r"#\s*type:\s*ignore")
# `# reason`: the codes, then a comment saying why.
TYPE_IGNORE_WELL_FORMED = re.compile(r"#\s*type:\s*ignore\[[a-z0-9-]+(,\s*[a-z0-9-]+)*\]\s+#\s*\S")


def bad_type_ignores(path: Path) -> list[str]:
    """`path:line: comment` for each `# type: ignore` without a code or without a reason."""
    bad = []
    source = path.read_text(encoding="utf-8")
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT or not (found := TYPE_IGNORE.search(token.string)):
            continue
        if not TYPE_IGNORE_WELL_FORMED.match(token.string[found.start() :]):
            name = rel(path) if path.is_relative_to(ROOT) else path.name
            bad.append(f"{name}:{token.start[0]}: {token.string}")
    return bad


def listing(found: dict[str, int]) -> str:
    return "\n".join(f"  {name}: {n} lines" for name, n in sorted(found.items()))


# --- modules ------------------------------------------------------------------------------


def test_no_module_in_the_apps_is_over_400_lines():
    offenders = long_modules(app_modules())
    assert not offenders, (
        f"modules over {MAX_MODULE_LINES} lines (split them into a package):\n" + listing(offenders)
    )


def test_no_test_module_is_over_400_lines():
    offenders = long_modules(suite_modules())
    assert not offenders, f"test modules over {MAX_MODULE_LINES} lines:\n" + listing(offenders)


# --- functions on the proxy path ----------------------------------------------------------


def test_every_proxy_path_entry_names_something():
    _, unmatched = proxy_path_modules()
    assert not unmatched, f"PROXY_PATH entries that match no module: {', '.join(unmatched)}"


def test_no_function_on_the_proxy_path_is_over_60_lines():
    paths, _ = proxy_path_modules()
    offenders = long_functions(paths)
    assert not offenders, (
        f"functions on the proxy path over {MAX_FUNCTION_LINES} lines:\n" + listing(offenders)
    )


def test_the_length_counts_from_def_to_the_last_line_without_decorators():
    tree = ast.parse("@decorator\n@another\ndef f():\n    x = 1\n\n    return x\n")
    [(name, node)] = list(functions(tree))
    assert (name, function_length(node)) == ("f", 4)


# --- type: ignore -------------------------------------------------------------------------


def test_every_type_ignore_names_its_code_and_its_reason():
    bad = [line for path in app_modules() for line in bad_type_ignores(path)]
    assert not bad, (
        "write `# type: ignore[code]  # reason` (mypy names the code):\n  " + "\n  ".join(bad)
    )


def test_no_type_ignore_where_nothing_type_checks():
    """mypy checks the apps only: in tests/ and bench/ a `# type: ignore` silences nothing."""
    found = [
        f"{rel(path)}:{token.start[0]}"
        for path in [*suite_modules(), *sorted((ROOT / "bench").rglob("*.py"))]
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        if token.type == tokenize.COMMENT and TYPE_IGNORE.search(token.string)
    ]
    assert not found, "remove these (nothing type-checks them):\n  " + "\n  ".join(found)


@pytest.mark.parametrize(
    ("line", "well_formed"),
    [
        ("x = f()  # type: ignore[arg-type]  # the stubs miss the bytes overload", True),
        ("x = f()  # type: ignore[arg-type, union-attr]  # why", True),
        ("x = f()  # type: ignore[arg-type]", False),
        ("x = f()  # type: ignore  # why", False),
        ("x = f()  # type: ignore", False),
        ('x = "# type: ignore"', True),
    ],
)
def test_the_type_ignore_check_reads_comments_only(tmp_path, line, well_formed):
    path = tmp_path / "probe.py"
    path.write_text(line + "\n")
    assert (not bad_type_ignores(path)) is well_formed
