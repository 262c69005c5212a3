"""The layout rules of docs/design.md §1, checked so that they cannot rot."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("crawler", "parsers", "sinks")
MAX_MODULE_LINES = 420  # "about 400"
MAX_TOP_MODULES = 12


def modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def test_import_contracts_hold():
    """parsers/ and sinks/ never import the engine; inspect never imports the crawl; no cycles."""
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_no_module_is_over_about_400_lines():
    long = {str(p.relative_to(REPO)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_crawler_itself_holds_about_a_dozen_modules():
    top = sorted(p.name for p in (REPO / "crawler").glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top


def test_no_module_or_package_shadows_the_standard_library():
    names = {p.stem for p in modules() if p.stem not in ("__init__", "__main__")}
    names |= {p.parent.name for p in modules() if p.name == "__init__.py"}
    assert names & sys.stdlib_module_names == set()


def test_every_package_opens_with_a_docstring_that_names_its_files():
    for init in (p for p in modules() if p.name == "__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        siblings = [p for p in init.parent.iterdir()
                    if (p.suffix == ".py" and p.name not in ("__init__.py", "__main__.py"))
                    or (p.is_dir() and (p / "__init__.py").exists())]
        missing = [p.name for p in siblings if p.name.removesuffix(".py") not in doc]
        assert doc and not missing, f"{init.relative_to(REPO)}: docstring does not name {missing}"
