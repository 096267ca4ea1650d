"""Long-lived threads for the sync code of HTTP requests, instead of two new threads per request.

Under ASGI, Django runs each request in an asgiref ThreadSensitiveContext of its own: the request's sync
code (the middleware chain, a sync view, in_db_thread) runs in one thread that no other request uses.
asgiref creates that thread the first time the request needs it. When the request ends, it starts a
second thread to join the first one. Both threads are started from the event loop, and Thread.start()
waits until the new thread has run. Under load, that means until the new thread got the GIL. So, while
a burst of jobs starts, every other request and frame of the process waits behind those starts.

Here a request borrows a thread that outlives it, and gives it back at the end. The isolation is the
same: a thread serves one request at a time. Django's per-thread state lasts from one request to the
next, as under any threaded WSGI server. The database connection is still closed, or given back to the
pool, when each request ends."""

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext

KEPT = 32  # idle threads kept per process; a burst beyond them makes new ones, which end after it


class RequestThread(ThreadPoolExecutor):
    """One thread, which counts the calls it has not finished: a request cancelled while its sync code
    runs (its client went away) leaves the thread busy, and the thread is then not lent again."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="request")
        self._lock = threading.Lock()
        self._unfinished = 0

    def submit(self, fn, /, *args, **kwargs) -> Future:
        with self._lock:
            self._unfinished += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._finished(None)
            raise
        # Registered before the caller's own callbacks, so the count is down before the caller wakes.
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _future: Future | None) -> None:
        with self._lock:
            self._unfinished -= 1

    @property
    def idle(self) -> bool:
        with self._lock:
            return self._unfinished == 0


class RequestThreads:
    """The idle threads of this process. Only the event loop takes and gives back."""

    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self._idle: list[RequestThread] = []

    def take(self) -> RequestThread:
        # The most recently used thread first: its stack and Django's per-thread state are warm.
        return self._idle.pop() if self._idle else RequestThread()

    def give_back(self, thread: RequestThread) -> None:
        if thread.idle and len(self._idle) < self.kept:
            self._idle.append(thread)
        else:
            thread.shutdown(wait=False)  # the thread ends once its last call returns

    @property
    def idle_count(self) -> int:
        return len(self._idle)


threads = RequestThreads()


async def in_borrowed_thread(handle, scope, receive, send) -> None:
    """Await handle(scope, receive, send) as Django's ASGIHandler.__call__ does, with a borrowed thread
    for its sync code. Every task the request starts must end before this returns: a thread-sensitive
    call made after the context has exited raises RuntimeError."""
    thread = threads.take()
    try:
        async with ThreadSensitiveContext(executor=thread):
            await handle(scope, receive, send)
    finally:
        threads.give_back(thread)
