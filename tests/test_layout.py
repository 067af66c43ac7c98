"""The boundary between the library and the command line, visible in the layout:
only modules under charrnn/cli/ import the terminal libraries."""
import ast
import pathlib

import charrnn

UI_LIBRARIES = {"click", "rich", "tqdm", "plotext"}
PACKAGE = pathlib.Path(charrnn.__file__).parent


def _imports(path):
    """Top-level names of every module the file imports, at any depth (functions too)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_only_the_cli_package_imports_click_rich_tqdm_or_plotext():
    outside = {str(p.relative_to(PACKAGE.parent)): sorted(UI_LIBRARIES & set(_imports(p)))
               for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts[:1]}
    assert len(outside) > 20        # the scan saw the library
    assert {p: libs for p, libs in outside.items() if libs} == {}


def test_the_cli_package_is_where_they_are_imported():
    inside = set()
    for p in (PACKAGE / "cli").rglob("*.py"):
        inside |= UI_LIBRARIES & set(_imports(p))
    assert inside == UI_LIBRARIES


def test_the_sweep_modules_sit_together():
    assert {p.name for p in (PACKAGE / "sweep").glob("*.py")} >= {"sweep.py", "trial.py", "executors.py"}
    assert not (PACKAGE / "commands").exists()
