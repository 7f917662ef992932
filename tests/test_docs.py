"""The documentation runs: its python blocks execute as written, and its measured tables are the
files that ``minivae estimators`` wrote (tests/test_plots.py checks the figures drawn from them)."""
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(DOCS.glob("*.md"))
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
INCLUDED_TABLE = re.compile(r"<!-- variance table: (\w+) -->\n(.*?)<!-- end -->", re.DOTALL)
TABLE_FILES = {"gaussian": DOCS / "estimators" / "variance.md",
               "logistic": DOCS / "estimators" / "logistic" / "variance.md"}


def test_there_is_documentation_with_code():
    assert PAGES and any(PYTHON_BLOCK.search(page.read_text()) for page in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_python_block_runs_in_order(page, monkeypatch):
    monkeypatch.chdir(DOCS.parent)  # the blocks read the measured files from the repository's root
    namespace = {"__name__": f"docs.{page.stem}"}
    for number, match in enumerate(PYTHON_BLOCK.finditer(page.read_text()), start=1):
        exec(compile(match.group(1), f"{page.name}, python block {number}", "exec"), namespace)


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_linked_files_exist(page):
    for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text()):
        assert (page.parent / target).is_file(), f"{page.name} links to {target}, which does not exist"


def test_included_tables_are_the_command_output():
    walkthrough = (DOCS / "walkthrough.md").read_text()
    included = dict(INCLUDED_TABLE.findall(walkthrough))
    assert included.keys() == TABLE_FILES.keys()
    for family, path in TABLE_FILES.items():
        assert included[family].strip() == path.read_text().strip(), f"the {family} table differs from {path}"
