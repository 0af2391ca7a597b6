"""tests/mutations.py breaks fastnet one textual change at a time; a change whose original text has moved no longer
breaks anything, and the script only says so when it is run. Each one must still find its text exactly once."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mutations  # noqa: E402

sys.path.pop(0)


@pytest.mark.parametrize("name", sorted(mutations.MUTATIONS))
def test_each_mutation_still_finds_its_text(name):
    path, original, broken, what = mutations.MUTATIONS[name]
    with open(os.path.join(mutations.ROOT, path)) as f:
        assert f.read().count(original) == 1, f"{name} ({what}): its text is no longer in {path} exactly once"
    assert broken != original
