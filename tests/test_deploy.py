"""Production settings pass Django's deployment checklist."""

import os
import subprocess
import sys

import pytest
from django.conf import settings


def test_check_deploy_is_clean_with_production_settings():
    env = {**os.environ, "DEBUG": "False", "SECRET_KEY": "x7" * 30 + "-production-like-secret",
           "ALLOWED_HOSTS": "ci.example.com"}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=settings.BASE_DIR, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_responses_carry_a_strict_content_security_policy(client):
    policy = client.get("/api/v1/openapi.json")["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy


def _check_deploy(**env_changes: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBUG": "False", "SECRET_KEY": "x7" * 30 + "-production-like-secret", **env_changes}
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=settings.BASE_DIR, env=env, capture_output=True, text=True)


def test_check_deploy_fails_on_wildcard_allowed_hosts():
    result = _check_deploy(ALLOWED_HOSTS="*")
    assert result.returncode != 0
    assert "buildboard.E001" in result.stderr + result.stdout


def test_allowed_hosts_come_from_site_root_when_unset():
    env = {k: v for k, v in os.environ.items() if k != "ALLOWED_HOSTS"}
    env.update(DEBUG="False", SITE_ROOT="https://ci.example.com")
    printed = subprocess.run(
        [sys.executable, "-c", "from buildboard import settings; print(','.join(settings.ALLOWED_HOSTS))"],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert printed == "ci.example.com"
    assert _check_deploy(ALLOWED_HOSTS=None, SITE_ROOT="https://ci.example.com").returncode == 0


def test_check_deploy_fails_on_a_redis_without_aof(tmp_path):
    from buildboard.lib.redis_server import _wait_for, free_port, redis_binary

    port = free_port()
    process = subprocess.Popen([redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        _wait_for(port, process)
        result = _check_deploy(ALLOWED_HOSTS="ci.example.com", REDIS_URL=f"redis://127.0.0.1:{port}/0")
    finally:
        process.terminate()
        process.wait(10)
    assert result.returncode != 0
    assert "jobs.E001" in result.stderr + result.stdout and "appendonly" in result.stderr + result.stdout


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("origin", "accepted"), [(b"http://localhost:8000", True),
                                                  (b"http://evil.example.com", False)])
def test_websockets_from_foreign_origins_are_refused(origin, accepted):
    from asgiref.sync import async_to_sync
    from asgiref.testing import ApplicationCommunicator

    from buildboard.asgi import application

    scope = {"type": "websocket", "path": "/ws/status/", "query_string": b"", "subprotocols": [],
             "headers": [(b"host", b"localhost"), (b"origin", origin)]}
    communicator = ApplicationCommunicator(application, scope)

    async def connect() -> str:
        await communicator.send_input({"type": "websocket.connect"})
        reply = (await communicator.receive_output(5))["type"]
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        await communicator.wait(5)
        return reply

    assert async_to_sync(connect)() == ("websocket.accept" if accepted else "websocket.close")
