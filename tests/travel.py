"""`python -m tests.travel MODULE ARGS...` runs `python -m MODULE ARGS...` on the clock of the test that
started it.

Under BB_TEST_NOW the test process travels in time (conftest.travelled_clock). The uvicorn and Celery
processes it starts must share that clock, or rows one side writes look future or stale to the other,
and channels_redis, which stamps group membership and messages with time.time(), would expire the
other side's sockets. The parent passes how far its clock is ahead of the real one (negative: behind)
in BB_TEST_CLOCK_OFFSET; without it, the module runs on the real clock."""

import os
import runpy
import sys
import time

import time_machine


def main() -> None:
    module, *args = sys.argv[1:]
    offset = os.environ.pop("BB_TEST_CLOCK_OFFSET", "")
    if offset:
        time_machine.travel(time.time() + float(offset), tick=True).start()
        time.time()  # a travelled clock starts ticking when first read, not when the journey starts
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
