"""The differential log check itself: what only the uvloop run logs, warns or prints is found,
and what both runs log with different ports, addresses or pids is not (apps/scenarios.py,
scenario selftest_uvloop_only_diagnostics)."""

import pytest

from integration_support import assert_no_new_diagnostics, run_scenario, scenario_diagnostics


@pytest.mark.timeout(60)
def test_differential_check_finds_only_what_uvloop_adds():
    baseline = scenario_diagnostics(run_scenario("selftest_uvloop_only_diagnostics", "asyncio"))
    ours = scenario_diagnostics(run_scenario("selftest_uvloop_only_diagnostics", "uvloop"))
    # (uvloop.install()'s DeprecationWarning on 3.12+ is left out by design.)
    assert ours - baseline == {
        ("log", "selftest", "WARNING", "only on uvloop, port N"),
        ("warning", "RuntimeWarning", "only on uvloop"),
        ("stderr", "only on uvloop, on stderr"),
    }
    with pytest.raises(AssertionError, match="only on uvloop"):
        assert_no_new_diagnostics(baseline, ours, "selftest")
