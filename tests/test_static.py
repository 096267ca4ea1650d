"""Static files under ASGI: whole, with caching headers, and conditional requests honoured."""

import httpx
import pytest

pytestmark = pytest.mark.e2e


def test_static_files_are_served_by_the_asgi_server_with_validators(asgi_server):
    first = httpx.get(f"{asgi_server}/static/css/app.css")
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/css")
    assert ":root" in first.text and int(first.headers["content-length"]) == len(first.content)
    again = httpx.get(f"{asgi_server}/static/css/app.css", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
