"""docs/ADDING_AN_OP.md names, for each file a new op touches, a place in it: each file must exist and hold it."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def places():
    with open(os.path.join(ROOT, "docs", "ADDING_AN_OP.md")) as f:
        rows = [line for line in f if line.startswith("| `")]
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        path, place = re.fullmatch(r"`([^`]+)`", cells[0]).group(1), re.fullmatch(r"`([^`]+)`", cells[2]).group(1)
        yield path, place


def test_the_page_names_places_that_exist():
    found = list(places())
    assert len(found) >= 10
    for path, place in found:
        full = os.path.join(ROOT, path)
        assert os.path.isfile(full), f"docs/ADDING_AN_OP.md names {path}, which does not exist"
        with open(full) as f:
            assert place in f.read(), f"docs/ADDING_AN_OP.md: {path} holds no {place!r}"
