"""The OpenAPI 3.1 description of the worker API, served at /api/v1/openapi.json."""

_ERROR = {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _errors(*codes: int) -> dict:
    text = {400: "Malformed JSON, a wrong type or an unknown value", 401: "Missing or bad token",
            404: "Unknown job", 409: "Conflict: superseded attempt or state", 413: "Part or log too large",
            415: "Not JSON"}
    return {str(c): {**_ERROR, "description": text[c]} for c in codes}


def _json(ref: str) -> dict:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


_JOB_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
_AUTH = [{"bearer": []}]

OPENAPI = {
    "openapi": "3.1.0",
    "info": {
        "title": "buildboard worker API",
        "version": "1",
        "description": "Workers report builds, job states and log parts; reports are ingested asynchronously "
        "(202 Accepted) by Celery tasks. Tokens are minted with `python manage.py create_token NAME`.",
    },
    "servers": [{"url": "/"}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "BuildIn": {
                "type": "object",
                "required": ["repository", "branch", "commit", "jobs"],
                "properties": {
                    "repository": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"},
                    "branch": {"type": "string", "minLength": 1},
                    "commit": {"type": "string", "minLength": 1, "maxLength": 64},
                    "message": {"type": "string"},
                    "author": {"type": "string"},
                    "event": {"type": "string", "default": "push"},
                    "number": {"type": "integer", "minimum": 1},
                    "jobs": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "properties": {
                                "number": {"type": "string"},
                                "config": {"type": "object"},
                                "queue": {"type": "string"},
                                "allow_failure": {"type": "boolean"},
                            },
                        },
                    },
                },
            },
            "BuildOut": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "number": {"type": "integer"},
                    "url": {"type": "string"},
                    "jobs": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "integer"}, "number": {"type": "string"}}}},
                },
            },
            "StateIn": {
                "type": "object",
                "required": ["state"],
                "properties": {
                    "state": {"type": "string", "enum": ["received", "started", "passed", "failed", "errored",
                                                         "canceled", "cancelled"]},
                    "at": {"type": "string", "format": "date-time"},
                    "worker": {"type": "string"},
                    "worker_version": {"type": "string"},
                    "exit_code": {"type": "integer"},
                    "attempt": {"type": "integer", "minimum": 1},
                },
            },
            "Ack": {"type": "object", "properties": {"cancel": {"type": "boolean"}}},
            "HeartbeatIn": {
                "type": "object",
                "required": ["version", "queue", "pool_size", "busy", "state"],
                "properties": {
                    "version": {"type": "string", "minLength": 1, "maxLength": 64},
                    "backend": {"type": "string", "maxLength": 64},
                    "host": {"type": "string", "maxLength": 255},
                    "queue": {"type": "string", "minLength": 1, "maxLength": 100},
                    "pool_size": {"type": "integer", "minimum": 0, "maximum": 10000},
                    "busy": {"type": "integer", "minimum": 0, "description": "At most pool_size."},
                    "state": {"type": "string", "enum": ["starting", "in_service", "draining", "stopped"]},
                    "errors": {"type": "array", "maxItems": 100, "items": {
                        "type": "object", "required": ["at", "message"],
                        "properties": {"at": {"type": "string", "format": "date-time"},
                                       "message": {"type": "string", "minLength": 1, "maxLength": 4000}}}},
                },
            },
            "HeartbeatOut": {"type": "object", "properties": {
                "desired_version": {"type": ["string", "null"],
                                    "description": "The version staff want this queue to run; null if none."},
                "drain": {"type": "boolean", "description": "Finish running jobs, take no new ones, then stop."}}},
            "LogIn": {
                "type": "object",
                "required": ["parts"],
                "properties": {
                    "attempt": {"type": "integer", "minimum": 1},
                    "parts": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["number", "content"],
                        "properties": {"number": {"type": "integer", "minimum": 0}, "content": {"type": "string"},
                                       "final": {"type": "boolean"}}}},
                },
            },
            "LogAck": {"type": "object", "properties": {
                "cancel": {"type": "boolean"},
                "persisted_through": {"type": "integer", "description": "Every part 0..N of the attempt is stored; "
                                      "-1 if none. Parts of this request may not be counted yet."}}},
            "Job": {"type": "object", "properties": {
                "id": {"type": "integer"}, "number": {"type": "string"}, "state": {"type": "string"},
                "attempt": {"type": "integer"}, "exit_code": {"type": ["integer", "null"]},
                "inconsistent": {"type": "boolean"}, "cancel_requested": {"type": "boolean"},
                "worker": {"type": "string"}, "worker_version": {"type": "string"}}},
            "Log": {"type": "object", "properties": {
                "job_id": {"type": "integer"}, "attempt": {"type": "integer"},
                "parts": {"type": "array", "items": {"type": "object"}}, "more": {"type": "boolean"},
                "complete": {"type": "boolean"}, "truncated": {"type": "boolean"},
                "persisted_through": {"type": "integer"}}},
        },
    },
    "paths": {
        "/api/v1/builds": {"post": {
            "summary": "Create a build with its jobs", "security": _AUTH,
            "requestBody": {"required": True, **_json("BuildIn")},
            "responses": {"201": {"description": "Created", **_json("BuildOut")}, **_errors(400, 401, 409, 415)},
        }},
        "/api/v1/jobs/{id}": {"get": {
            "summary": "A job", "parameters": [_JOB_ID],
            "responses": {"200": {"description": "The job", **_json("Job")}, **_errors(404)},
        }},
        "/api/v1/jobs/{id}/state": {"post": {
            "summary": "Report a job state", "security": _AUTH, "parameters": [_JOB_ID],
            "requestBody": {"required": True, **_json("StateIn")},
            "responses": {"202": {"description": "Accepted", **_json("Ack")}, **_errors(400, 401, 404, 409, 415)},
        }},
        "/api/v1/jobs/{id}/log": {
            "post": {
                "summary": "Append log parts", "security": _AUTH, "parameters": [_JOB_ID],
                "requestBody": {"required": True, **_json("LogIn")},
                "responses": {"202": {"description": "Accepted", **_json("LogAck")},
                              **_errors(400, 401, 404, 409, 413, 415)},
            },
            "get": {
                "summary": "Log parts after a number, in order",
                "parameters": [_JOB_ID, {"name": "after", "in": "query", "schema": {"type": "integer", "default": -1}},
                               {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 1000}}],
                "responses": {"200": {"description": "Parts", **_json("Log")}, **_errors(400, 404)},
            },
        },
        "/api/v1/jobs/{id}/restart": {"post": {
            "summary": "Start the next attempt of a finished job", "security": _AUTH, "parameters": [_JOB_ID],
            "responses": {"202": {"description": "Restarted"}, **_errors(401, 404, 409)},
        }},
        "/api/v1/jobs/{id}/cancel": {"post": {
            "summary": "Ask the worker to cancel a running job", "security": _AUTH, "parameters": [_JOB_ID],
            "responses": {"202": {"description": "Cancel requested"}, **_errors(401, 404, 409)},
        }},
        "/api/v1/workers/{name}/heartbeat": {"post": {
            "summary": "A worker's heartbeat: what it runs and how it is doing; answers what staff want of it",
            "description": "Send every 30 s or so; an instance silent for FLEET_HEARTBEAT_TIMEOUT seconds (90) "
            "shows as silent and stops counting toward its queue's capacity. Errors are grouped by a signature "
            "with numbers, hashes, ids and image tags stripped; resending an error (same time) counts it once.",
            "security": _AUTH,
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,254}$"}}],
            "requestBody": {"required": True, **_json("HeartbeatIn")},
            "responses": {"200": {"description": "Recorded", **_json("HeartbeatOut")}, **_errors(400, 401, 415)},
        }},
        "/jobs/{id}/log.txt": {"get": {
            "summary": "The raw log as text (?ansi=0 strips colour codes, ?download=1 as attachment)",
            "parameters": [_JOB_ID],
            "responses": {"200": {"description": "Log", "content": {"text/plain": {}}}, **_errors(404)},
        }},
    },
}
