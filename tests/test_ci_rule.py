"""The rule in tests/conftest.py: a missing test oracle or data file skips locally and fails in CI."""

import pytest

from tests.conftest import in_ci, missing, require_module


@pytest.mark.parametrize("value,ci", [("", False), ("0", False), ("false", False), ("true", True), ("1", True)])
def test_ci_is_read_from_the_environment(monkeypatch, value, ci):
    monkeypatch.setenv("CI", value)
    assert in_ci() is ci


def test_missing_oracle_skips_locally_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no_such_oracle_xyz"):
        require_module("no_such_oracle_xyz")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set, so this fails instead of skipping"):
        require_module("no_such_oracle_xyz")
    with pytest.raises(pytest.fail.Exception, match="fra.txt not present"):
        missing("fra.txt not present")
    assert require_module("json").dumps([1]) == "[1]"
