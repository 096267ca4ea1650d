"""Management commands an operator runs by hand."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts import tokens
from accounts.models import ApiToken

pytestmark = pytest.mark.django_db


def test_create_token_prints_the_secret_once_and_stores_only_its_hash():
    out = StringIO()
    call_command("create_token", "fleet-1", "--queue", "builds.linux", stdout=out)
    secret = out.getvalue().strip()
    token = ApiToken.objects.get(name="fleet-1")
    assert secret.startswith("bb_") and len(secret) > 30
    assert secret not in token.hashed_secret and tokens.authenticate(secret) == token


def test_create_token_refuses_a_duplicate_name():
    call_command("create_token", "fleet-1", "--queue", "builds.linux", stdout=StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_token", "fleet-1", "--queue", "builds.linux", stdout=StringIO())


def test_seed_status_components_fills_an_empty_page_once():
    from incidents.models import Component

    call_command("seed_status_components", stdout=StringIO())
    count = Component.objects.count()
    assert count >= 3 and Component.objects.filter(queues__contains="builds.linux").exists()
    call_command("seed_status_components", stdout=StringIO())
    assert Component.objects.count() == count


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_bb_run_ends_its_start_up_output_with_the_url_and_login():
    """The servers' banners (Celery's worker and beat print theirs) come first; the URL and the login
    lines come last, so they do not scroll away."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    from .conftest import BASE_DIR, free_port, subprocess_env

    port = free_port()
    env = subprocess_env(BUILDBOARD_ADMIN_PASSWORD="not-a-secret-test-password",
                         CELERY_BEAT_SCHEDULE_FILENAME=os.devnull)
    process = subprocess.Popen([sys.executable, "-m", "buildboard.lib.stack", "run", "--no-demo", "--port", str(port),
                                "--concurrency", "1"], cwd=BASE_DIR, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 90
        while not any(line.startswith("Press Ctrl-C") for line in lines):
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
            time.sleep(0.2)
        time.sleep(1)  # nothing else is printed once it says it is running
        text = [line.rstrip() for line in lines if line.strip()]
        assert text[-3:] == [f"buildboard is running at http://127.0.0.1:{port}/  (status page: "
                             f"http://127.0.0.1:{port}/status/)",
                             "Staff login: admin / not-a-secret-test-password", "Press Ctrl-C to stop everything."]
        banner = "\n".join(text[:-3])
        assert "[config]" in banner and "celery beat" in banner, banner  # worker's and beat's banners, before
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
