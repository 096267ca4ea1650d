"""The threads requests borrow for their sync code (buildboard/lib/requestthreads.py)."""

import threading

from buildboard.lib.requestthreads import RequestThreads


def test_an_idle_thread_is_kept_and_lent_again():
    pool = RequestThreads(kept=2)
    first = pool.take()
    assert first.submit(threading.current_thread).result(5).name.startswith("request")
    pool.give_back(first)
    assert pool.idle_count == 1
    assert pool.take() is first
    first.shutdown()


def test_a_thread_still_running_a_call_is_not_lent_again_and_ends_after_it():
    pool = RequestThreads(kept=2)
    busy, release = pool.take(), threading.Event()
    running = busy.submit(release.wait, 5)
    pool.give_back(busy)  # a request cancelled while its sync code ran
    assert pool.idle_count == 0
    other = pool.take()
    assert other is not busy
    release.set()
    assert running.result(5) is True
    (worker,) = busy._threads
    worker.join(5)
    assert not worker.is_alive()
    other.shutdown()


def test_no_more_than_the_kept_number_of_threads_wait_idle():
    pool = RequestThreads(kept=2)
    taken = [pool.take() for _ in range(3)]
    for thread in taken:
        thread.submit(int).result(5)  # each has started its thread
    for thread in taken:
        pool.give_back(thread)
    assert pool.idle_count == 2
    (worker,) = taken[2]._threads
    worker.join(5)
    assert not worker.is_alive()
    for thread in taken[:2]:
        thread.shutdown()
