"""Production settings pass Django's deployment checklist."""

import os
import subprocess
import sys

from django.conf import settings


def test_check_deploy_is_clean_with_production_settings():
    env = {**os.environ, "DEBUG": "False", "SECRET_KEY": "x7" * 30 + "-production-like-secret",
           "ALLOWED_HOSTS": "ci.example.com"}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=settings.BASE_DIR, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (0 silenced)" in result.stdout


def test_responses_carry_a_strict_content_security_policy(client):
    policy = client.get("/api/v1/openapi.json")["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
