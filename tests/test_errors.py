"""Every bad input in tests/error_cases.py gets its exception and a message naming the problem; docs/ERRORS.md
is what those cases print now."""
import os
import sys

import pytest

from error_cases import CASES, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("case", CASES, ids=[c.title for c in CASES])
def test_bad_input_gets_a_clear_error(case):
    exc, message = run(case)
    assert exc is not None, f"{case.code!r} raised nothing"
    assert type(exc) is case.error, f"{case.code!r} raised {type(exc).__name__}: {message}"
    with pytest.raises(case.error, match=case.match):
        raise exc


def test_errors_doc_is_generated_from_the_cases():
    sys.path.insert(0, os.path.join(ROOT, "docs"))
    import make_errors

    with open(os.path.join(ROOT, "docs", "ERRORS.md")) as f:
        assert f.read() == make_errors.render(), "docs/ERRORS.md is stale: run python docs/make_errors.py"
