"""docs/ADDING_AN_OP.md names, for each file a new op touches, a place in it: each file must exist and hold it."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def places():
    """(file, name) for each row of the table, and for each `file` (`name`) in the prose."""
    with open(os.path.join(ROOT, "docs", "ADDING_AN_OP.md")) as f:
        text = f.read()
    for row in (line for line in text.splitlines() if line.startswith("| `")):
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        yield re.fullmatch(r"`([^`]+)`", cells[0]).group(1), re.fullmatch(r"`([^`]+)`", cells[2]).group(1)
    yield from re.findall(r"`((?:csrc|src|tests)/[^`]+)` \(`([^`]+)`", text.replace("\n", " "))


def test_the_page_names_places_that_exist():
    found = list(places())
    assert len(found) >= 12
    for path, place in found:
        full = os.path.join(ROOT, path)
        assert os.path.isfile(full), f"docs/ADDING_AN_OP.md names {path}, which does not exist"
        with open(full) as f:
            assert place in f.read(), f"docs/ADDING_AN_OP.md: {path} holds no {place!r}"
