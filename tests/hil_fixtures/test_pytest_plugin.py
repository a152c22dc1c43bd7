"""The HIL plugin: plain runs use emulators; `--hil=lab.toml` runs the same tests on the lab's instruments.

The "lab" here is the ITC4001 pyvisa-sim model, so the --hil path is exercised without hardware.
"""

from __future__ import annotations

import pytest

from hil_fixtures.sims import sim_library

pytest_plugins = ("pytester",)

TEST_FILE = """
import pytest

def test_round_trip(itc4001):
    itc4001.current_limit = 0.05
    assert itc4001.current_limit == pytest.approx(0.05)

@pytest.mark.emulator
def test_fault_injection(itc4001):
    pass

@pytest.mark.hil
def test_bench_only(itc4001):
    pass

def test_missing_instrument(mbx):
    pass
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_bench=TEST_FILE)
    return pytester.runpytest_inprocess(
        "-p", "hil_fixtures.pytest_plugin", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:benchmark", *args
    )


def test_plain_run_uses_emulators_and_skips_hil_tests(pytester):
    result = run(pytester)
    result.assert_outcomes(passed=3, skipped=1)


def test_hil_run_uses_the_lab_file_and_skips_emulator_only_tests(pytester):
    lab = pytester.makefile(
        ".toml",
        lab=f'''
[itc4001]
resource = "USB0::0x1313::0x804A::M00000000::INSTR"
visa_library = "{sim_library("itc4001")}"
timeout_s = 0.5
''',
    )
    result = run(pytester, f"--hil={lab}", "-rs")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(["*fault injection needs an emulator*", "*no [[]mbx[]] table in the lab file*"])


def test_lab_file_with_unknown_instrument_is_a_usage_error(pytester):
    lab = pytester.makefile(".toml", lab='[laser9000]\nresource = "X"\n')
    result = run(pytester, f"--hil={lab}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown instrument table [[]laser9000[]]*"])
