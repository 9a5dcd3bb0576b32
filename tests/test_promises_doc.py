"""docs/hardening.md names, for each promise, the test that holds it: every test it names
exists (a renamed or deleted test must take its promise with it)."""
import re

from conftest import ROOT


def test_every_test_named_in_the_promises_doc_exists():
    doc = (ROOT / "docs" / "hardening.md").read_text()
    defined = {}
    for path in (ROOT / "tests").glob("test_*.py"):
        for name in re.findall(r"^def (test_\w+)", path.read_text(), re.M):
            defined.setdefault(name, set()).add(path.name)
    current_file = None
    missing, named = [], 0
    for file, name in re.findall(r"`(?:(test_\w+\.py)(?:::)?)?(test_\w+)?`", doc):
        if file and not name:
            if not (ROOT / "tests" / file).is_file():
                missing.append(file)
            current_file = file
            continue
        if file:
            current_file = file
        named += 1
        if name not in defined or (current_file and current_file not in defined[name]
                                   and file):
            missing.append(f"{file or ''}::{name}")
    assert named > 60 and not missing, missing
