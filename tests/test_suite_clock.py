"""The suite's own clock: processes a test starts share its travelled clock (BB_TEST_NOW and
time-machine), and run on the real clock when the test does not travel."""

import subprocess
import time
from datetime import UTC, datetime

import pytest
import time_machine
from django.conf import settings

from .conftest import python_module, subprocess_env

# How far the child's clock is ahead of the real one, in seconds.
PRINT_OFFSET = ("import time, time_machine; real = time_machine.escape_hatch.time.time() "
                "if time_machine.escape_hatch.is_travelling() else time.time(); print(time.time() - real)")


def offset_in_a_child_process() -> float:
    result = subprocess.run(python_module("django", "shell", "-v", "0", "-c", PRINT_OFFSET), cwd=settings.BASE_DIR,
                            env=subprocess_env(), capture_output=True, text=True, timeout=60, check=True)
    return float(result.stdout.strip())


def test_a_process_started_while_travelling_keeps_time_with_the_test():
    with time_machine.travel(datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC), tick=True):
        time.sleep(0.2)
        ours = time.time() - time_machine.escape_hatch.time.time()
        assert ours == pytest.approx(offset_in_a_child_process(), abs=0.5)  # not behind by its start-up time


@pytest.mark.real_clock("pins what a test that does not travel gives the processes it starts")
def test_a_process_started_without_travelling_runs_on_the_real_clock():
    with time_machine.travel(datetime(2028, 2, 29, tzinfo=UTC)):
        pass  # a journey that ended leaves nothing behind
    assert abs(offset_in_a_child_process()) < 0.01
