"""The worker API's lean chain (buildboard/lib/apichain.py), through the real ASGI application.

Bearer requests under /api/v1/ skip the browser middleware; everything else keeps it, so CSRF still
guards every cookie-authenticated POST and every HTML page still carries its CSP."""

import asyncio
import json
import threading

import httpx
import pytest
from django.conf import settings
from django.core import signals
from django.test import Client

from buildboard.lib.apichain import is_lean

pytestmark = pytest.mark.django_db(transaction=True)


def call(method: str, path: str, *, headers: dict | None = None, cookies: dict | None = None,
         json=None, data=None) -> httpx.Response:
    """One request to buildboard.asgi.application, in this process, as uvicorn would pass it."""
    from buildboard.asgi import application

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", cookies=cookies) as client:
            return await client.request(method, path, headers=headers, json=json, data=data)

    return asyncio.run(send())


def session_of(user) -> dict:
    client = Client()
    client.force_login(user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


@pytest.mark.parametrize(("path", "headers", "lean"), [
    ("/api/v1/jobs/1/log", [(b"authorization", b"Bearer abc")], True),
    ("/api/v1/jobs/1/log", [(b"authorization", b"bearer abc")], True),
    ("/api/v1/builds", [(b"accept", b"*/*"), (b"authorization", b"BEARER abc")], True),
    ("/api/v1/jobs/1/log", [], False),
    ("/api/v1/jobs/1/log", [(b"authorization", b"Basic YTpi")], False),
    ("/api/v1/jobs/1/log", [(b"cookie", b"sessionid=x")], False),
    ("/jobs/1/cancel", [(b"authorization", b"Bearer abc")], False),
    ("/api/v2/summary.json", [(b"authorization", b"Bearer abc")], False),
    ("/api/v1", [(b"authorization", b"Bearer abc")], False),
])
def test_only_bearer_requests_under_api_v1_take_the_lean_chain(path, headers, lean):
    assert is_lean({"type": "http", "path": path, "headers": headers}) is lean


def test_a_bearer_post_is_answered_by_the_same_view_without_csrf_or_page_headers(worker_token, job):
    response = call("POST", f"/api/v1/jobs/{job.pk}/log", headers={"Authorization": f"Bearer {worker_token}"},
                    json={"parts": [{"number": 0, "content": "hello\n"}]})
    assert response.status_code == 202, response.text
    assert response.json() == {"cancel": False, "persisted_through": -1}
    # Sized, as the full chain's answers are (CommonMiddleware), not sent in chunks.
    assert response.headers["Content-Length"] == str(len(response.content))
    full = call("POST", f"/api/v1/jobs/{job.pk}/log", json={"parts": []})
    assert full.headers["Content-Length"] == str(len(full.content))
    # The browser chain's marks are absent: no frame options, no session cookie, no Vary: Cookie.
    assert "X-Frame-Options" not in response.headers
    assert "Cookie" not in response.headers.get("Vary", "")
    assert "set-cookie" not in response.headers
    # The same view's validation and errors.
    bad = call("POST", f"/api/v1/jobs/{job.pk}/log", headers={"Authorization": f"Bearer {worker_token}"},
               json={"parts": [{"number": -1, "content": "x"}]})
    assert bad.status_code == 400 and "error" in bad.json()
    missing = call("POST", "/api/v1/jobs/999999/log", headers={"Authorization": f"Bearer {worker_token}"},
                   json={"parts": [{"number": 0, "content": "x"}]})
    assert missing.status_code == 404 and missing.json()["error"] == "job 999999 does not exist"
    nowhere = call("GET", "/api/v1/nowhere", headers={"Authorization": f"Bearer {worker_token}"})
    assert nowhere.status_code == 404 and "error" in nowhere.json()


def test_a_bearer_request_is_judged_by_its_token_alone(alice, make_build):
    job = make_build(repository="acme/secret").jobs.get()
    job.build.repository.private = True
    job.build.repository.save(update_fields=["private"])
    staff = session_of(alice)
    # Signed in as staff, with no token: the full chain reads the session.
    assert call("GET", f"/api/v1/jobs/{job.pk}", cookies=staff).status_code == 200
    # A Bearer request has no session, so the cookie sent along grants nothing: a bad token sees no private job.
    response = call("GET", f"/api/v1/jobs/{job.pk}", cookies=staff, headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 404


def test_cookie_authenticated_posts_still_need_the_csrf_token(dave, make_build, worker_token):
    job = make_build().jobs.get()
    session = session_of(dave)  # dave may operate acme's jobs
    # The page's form without its CSRF token is refused, with or without an Authorization header.
    for headers in ({}, {"Authorization": f"Bearer {worker_token}"}):
        refused = call("POST", f"/jobs/{job.pk}/cancel", cookies=session, headers=headers)
        assert refused.status_code == 403
    # A cookie alone authenticates no API call: it needs a token.
    response = call("POST", f"/api/v1/jobs/{job.pk}/cancel", cookies=session)
    assert response.status_code == 401
    job.refresh_from_db()
    assert not job.cancel_requested


def test_html_pages_keep_their_content_security_policy(worker_token, job):
    for headers in ({}, {"Authorization": f"Bearer {worker_token}"}):
        page = call("GET", f"/jobs/{job.pk}/", headers=headers)
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Frame-Options"] == "DENY"


def test_a_lean_request_starts_and_finishes_once_in_the_thread_that_served_it(worker_token, job):
    """One hop serves a worker's request: request_started, the view and request_finished (which hands the
    database connection back) run in one thread, once each, for answers and for refusals alike."""
    seen: list[tuple[str, int]] = []

    def started(**kwargs):
        seen.append(("started", threading.get_ident()))

    def finished(**kwargs):
        seen.append(("finished", threading.get_ident()))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        headers = {"Authorization": f"Bearer {worker_token}"}
        ok = call("POST", f"/api/v1/jobs/{job.pk}/log", headers=headers,
                  json={"parts": [{"number": 0, "content": "hello\n"}]})
        refused = call("POST", "/api/v1/jobs/999999/log", headers=headers,
                       json={"parts": [{"number": 1, "content": "x"}]})
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert ok.status_code == 202 and refused.status_code == 404
    assert [name for name, _ in seen] == ["started", "finished"] * 2
    assert seen[0][1] == seen[1][1] and seen[2][1] == seen[3][1]


def test_the_log_post_is_served_on_the_event_loop_and_other_views_in_one_thread_hop(worker_token, job,
                                                                                     monkeypatch):
    """The worker's log POST (an async view) runs on the server's event loop from the first middleware to
    the answer; a sync view (the state report) still runs in one thread. Both carry the API's headers."""
    from jobs import ingest

    threads: dict[str, int] = {}
    accept = ingest.aaccept_parts

    async def recording(*args, **kwargs):
        threads["log"] = threading.get_ident()
        return await accept(*args, **kwargs)

    def started(**kwargs):
        threads.setdefault("started", threading.get_ident())

    monkeypatch.setattr(ingest, "aaccept_parts", recording)
    headers = {"Authorization": f"Bearer {worker_token}"}
    log = call("POST", f"/api/v1/jobs/{job.pk}/log", headers=headers,
               json={"parts": [{"number": 0, "content": "hello\n"}]})
    signals.request_started.connect(started)
    try:
        state = call("POST", f"/api/v1/jobs/{job.pk}/state", headers=headers, json={"state": "started"})
    finally:
        signals.request_started.disconnect(started)
    assert log.status_code == 202 and state.status_code == 202
    assert threads["log"] == threading.get_ident()  # call() runs the app's loop in this thread
    assert threads["started"] != threading.get_ident()
    for response in (log, state):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"


def test_the_log_post_s_frame_reaches_this_process_s_viewers_before_the_request_s_after_work(worker_token, job):
    """The answer goes first, then the frame the POST rang for this process's viewers, then the request's
    after-work (request_finished, and the flush a log answer publishes as it closes): a viewer does not wait
    behind that work."""
    from buildboard.asgi import application
    from jobs.consumers import JobConsumer
    from tests.test_consumers import job_socket_scope

    seen: list[str] = []

    def finished(**kwargs):
        seen.append("finished")

    async def scenario():
        inputs, joined = asyncio.Queue(), asyncio.Event()

        async def to_viewer(message):
            if message["type"] == "websocket.send":
                if json.loads(message["text"])["type"] == "log.parts":
                    seen.append("frame")
                joined.set()  # the job.state frame every viewer gets first

        async def to_worker(message):
            if message["type"] == "http.response.body":
                seen.append("answer")

        async def body():
            return {"type": "http.request", "body": json.dumps({"parts": [{"number": 0, "content": "hi\n"}]}).encode()}

        viewer = asyncio.ensure_future(JobConsumer.as_asgi()(job_socket_scope(job), inputs.get, to_viewer))
        inputs.put_nowait({"type": "websocket.connect"})
        await asyncio.wait_for(joined.wait(), 5)
        path = f"/api/v1/jobs/{job.pk}/log"
        await application({
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "server": ("testserver", 80),
            "client": ("127.0.0.1", 50000), "headers": [(b"host", b"testserver"),
                                                        (b"content-type", b"application/json"),
                                                        (b"authorization", f"Bearer {worker_token}".encode())],
        }, body, to_worker)
        for _ in range(100):  # without a frame, the assertion below says what came instead
            if "frame" in seen:
                break
            await asyncio.sleep(0.01)
        inputs.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(viewer, 5)

    signals.request_finished.connect(finished)
    try:
        asyncio.run(scenario())
    finally:
        signals.request_finished.disconnect(finished)
    assert seen == ["answer", "frame", "finished"]


def test_requests_borrow_a_thread_that_outlives_them(worker_token, job, dave):
    """Each request's sync code runs in a thread it borrows (buildboard/lib/requestthreads.py), not in
    two new threads per request: requests through the lean chain and through the full chain alike."""
    seen: list[threading.Thread] = []

    def started(**kwargs):
        seen.append(threading.current_thread())

    headers = {"Authorization": f"Bearer {worker_token}"}
    signals.request_started.connect(started)
    try:
        states = [call("POST", f"/api/v1/jobs/{job.pk}/state", headers=headers, json={"state": "started"})
                  for _ in range(2)]
        page = call("GET", "/", cookies=session_of(dave))
    finally:
        signals.request_started.disconnect(started)
    assert [r.status_code for r in states] == [202, 202] and page.status_code == 200
    assert len(seen) == 3 and seen[0] is seen[1] is seen[2]
    assert seen[0] is not threading.current_thread() and seen[0].name.startswith("request")


def test_a_log_post_s_after_work_runs_before_the_request_gives_its_thread_back(worker_token, job):
    """The flush a log answer starts as it closes runs in the request's thread (eagerly, under the test
    settings): the request waits for it before lending the thread again, so the parts are stored."""
    headers = {"Authorization": f"Bearer {worker_token}"}
    response = call("POST", f"/api/v1/jobs/{job.pk}/log", headers=headers,
                    json={"parts": [{"number": 0, "content": "hello\n"}]})
    assert response.status_code == 202, response.text
    job.refresh_from_db()
    assert job.log_persisted_through == 0
    assert [p.content for p in job.parts.all()] == ["hello\n"]
