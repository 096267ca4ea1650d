"""What a worker does with the API's answers, as the README's worker API section says; the demo fleet
(`manage.py simulate`) and the fault-injection tests use it.

- 2xx: done. A log answer's `persisted_through` says which parts are stored; keep the rest.
- 429, 503, a dropped connection: wait (Retry-After, else a growing backoff) and send the same request
  again. Resending is always safe: parts are stored once each, state reports fold idempotently.
- 409: this attempt was superseded (the job was restarted): stop reporting it.
- 413: a part over the per-part limit is a bug of ours (chunk smaller before numbering); a log over
  the per-job limit is truncated: stop sending log parts.
- Other 4xx: a bug of ours; raise."""

import random
import time
from dataclasses import dataclass, field

import httpx

RETRIABLE = (429, 502, 503, 504)
BACKOFF = (0.25, 0.5, 1.0, 2.0, 4.0)


class Superseded(Exception):
    """409: the job was restarted; reports about this attempt are refused."""


class Refused(Exception):
    """A 4xx other than 409/429: the request itself is wrong and resending cannot help."""

    def __init__(self, response: httpx.Response):
        super().__init__(f"{response.request.method} {response.request.url.path}: {response.status_code} "
                         f"{response.text[:300]}")
        self.response = response


@dataclass
class ApiClient:
    url: str
    token: str
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))
    give_up_after: float = 300.0  # seconds of waiting in a row before an outage is the caller's problem
    retries: int = 0  # requests sent again after a 429, 503 or a dropped connection

    def request(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        """Send until the server answers something other than 'try again'; returns that answer."""
        waited, attempt = 0.0, 0
        while True:
            try:
                response = self.client.request(method, self.url.rstrip("/") + path, json=body,
                                               headers={"Authorization": f"Bearer {self.token}"})
                if response.status_code not in RETRIABLE:
                    return response
                wait = float(response.headers.get("Retry-After") or BACKOFF[min(attempt, len(BACKOFF) - 1)])
            except httpx.TransportError:
                wait = BACKOFF[min(attempt, len(BACKOFF) - 1)]
            waited += wait
            if waited > self.give_up_after:
                raise TimeoutError(f"{method} {path}: no answer but 'try again' for {self.give_up_after:.0f} s")
            self.retries += 1
            attempt += 1
            time.sleep(wait * random.uniform(1.0, 1.2))  # jitter: a fleet must not come back in lockstep

    def post(self, path: str, body: dict) -> dict:
        response = self.request("POST", path, body)
        if response.status_code == 409:
            raise Superseded(response.json().get("error", ""))
        if response.status_code >= 400:
            raise Refused(response)
        return response.json()

    def get(self, path: str) -> dict:
        response = self.request("GET", path)
        if response.status_code >= 400:
            raise Refused(response)
        return response.json()


@dataclass
class LogStream:
    """One attempt's log, part by part, until every part is stored.

    Each part is kept until `persisted_through` covers it. Parts of the request just sent may not be
    counted yet, so a part is resent only when persisted_through has not reached it for resend_after
    seconds, and then at doubling intervals (a stalled server is not flooded); finish() waits, resending
    so, until the whole log is stored."""

    api: ApiClient
    job_id: int
    resend_after: float = 5.0
    next_number: int = 0
    persisted_through: int = -1
    unconfirmed: dict[int, tuple[dict, float]] = field(default_factory=dict)  # number -> (part, next resend)
    sends: dict[int, int] = field(default_factory=dict)  # number -> times sent
    accepted: set[int] = field(default_factory=set)  # parts answered 202 at least once
    resent: int = 0
    cancel: bool = False
    stopped: str = ""  # why nothing more is sent: "superseded" or "truncated"

    @property
    def path(self) -> str:
        return f"/api/v1/jobs/{self.job_id}/log"

    def send(self, content: str, final: bool = False) -> None:
        """Append the next part (and resend any that have waited too long)."""
        part = {"number": self.next_number, "content": content, "final": final}
        self.next_number += 1
        if self.stopped:
            return
        self.unconfirmed[part["number"]] = (part, 0.0)
        self._post(self._due())

    def _due(self) -> list[dict]:
        now = time.monotonic()
        return sorted((p for p, due in self.unconfirmed.values() if due <= now), key=lambda p: p["number"])

    def _post(self, parts: list[dict]) -> None:
        now = time.monotonic()
        self.resent += sum(1 for p in parts if self.sends.get(p["number"]))
        try:
            response = self.api.request("POST", self.path, {"parts": parts})
        except TimeoutError:
            return  # still unconfirmed: finish() tries again
        body = response.json() if response.headers.get("Content-Type") == "application/json" else {}
        if response.status_code == 409:
            self.stopped, self.unconfirmed = "superseded", {}
            return
        if response.status_code == 413 and "persisted_through" in body and "per part" not in body["error"]:
            self.stopped, self.unconfirmed = "truncated", {}
            return
        if response.status_code >= 400:
            raise Refused(response)
        self.cancel = self.cancel or body.get("cancel", False)
        self.accepted.update(p["number"] for p in parts)
        for p in parts:
            sends = self.sends[p["number"]] = self.sends.get(p["number"], 0) + 1
            self.unconfirmed[p["number"]] = (p, now + min(self.resend_after * 2 ** (sends - 1), 60.0))
        self._confirmed(body["persisted_through"])

    def _confirmed(self, through: int) -> None:
        self.persisted_through = max(self.persisted_through, through)
        for number in [n for n in self.unconfirmed if n <= self.persisted_through]:
            del self.unconfirmed[number]
            self.sends.pop(number, None)

    def finish(self, timeout: float = 120.0, poll: float = 0.5) -> bool:
        """Wait until every part sent is stored, resending what persisted_through has not reached for
        resend_after seconds. Returns whether everything is stored (or the attempt ended) in time."""
        deadline = time.monotonic() + timeout
        while self.unconfirmed and time.monotonic() < deadline:
            try:
                job = self.api.get(f"/api/v1/jobs/{self.job_id}")
                self._confirmed(job["log"]["persisted_through"])
            except (Refused, TimeoutError):
                pass
            due = self._due()
            if due:
                self._post(due)
            if self.unconfirmed:
                time.sleep(poll)
        return not self.unconfirmed
