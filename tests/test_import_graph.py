"""The apps' import arrows point one way (STYLE: one room per domain): no import cycles, jobs/ never imports
fleet/, fleet/ reads jobs/ and accounts/ through its named doors only, accounts/ sits below both, a tasks
module is a leaf, and the dev tools stay outside the running service. Read from the source with ast,
imports inside functions included."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("buildboard", "accounts", "jobs", "fleet", "incidents", "devtools")
RUNTIME_APPS = ("accounts", "jobs", "fleet", "incidents")

# Where fleet/ may reach into other apps: job facts, job changes, drafting incidents, and from accounts the
# API token check and the permission decisions (the heartbeat's queue scope, the staff pages' gate).
FLEET_DOORS = {"jobs.queries", "jobs.services", "incidents.services", "accounts.tokens", "accounts.permissions"}
# accounts/ is below jobs/ and fleet/ (they ask it who may do what). The one question it asks back: which
# queues exist, when staff mint a worker token.
ACCOUNTS_DOORS = {"fleet.queues"}
# What jobs/ uses of accounts/: the permission decisions, the token check, the audit log, the access-change
# doorbell, and its models, services and forms; never its pages, URLs, admin or sign-in wiring.
JOBS_DOORS_INTO_ACCOUNTS = {"accounts.permissions", "accounts.tokens", "accounts.audit", "accounts.live",
                            "accounts.models", "accounts.services", "accounts.forms"}
# Views that enqueue Celery tasks may import a tasks module; nothing else may.
ENQUEUERS = {"jobs.api", "incidents.views"}
# Known before the fleet moved out of jobs/, in an app this change did not touch: incidents/services.py
# enqueues subscriber notifications itself. New entries here are a step backwards.
KNOWN_CYCLES = {frozenset({"incidents.services", "incidents.tasks"})}
KNOWN_TASK_IMPORTERS = {("incidents.services", "incidents.tasks")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[_module_name(path)] = path
    return found


MODULES = _modules()


def _known(name: str) -> str | None:
    """The project module a dotted import name lands in (jobs.models.Job → jobs.models), or None."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports_of(name: str, path: Path) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            known = _known(target)
            if known and known != name:
                found.add(known)
    return found


GRAPH = {name: _imports_of(name, path) for name, path in MODULES.items()}


def _cycles() -> set[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def _edges(source_app: str, target_app: str) -> set[tuple[str, str]]:
    return {(src, dst) for src, targets in GRAPH.items() if src.split(".")[0] == source_app
            for dst in targets if dst.split(".")[0] == target_app}


def test_the_graph_sees_relative_lazy_and_aliased_imports():
    # Guards the parser itself: these edges exist in the code, one of each kind.
    assert "fleet.models" in GRAPH["fleet.alerts"]  # from .models import ...
    assert "jobs.queries" in GRAPH["fleet.alerts"]  # from jobs import queries as job_queries
    assert "incidents.services" in GRAPH["fleet.alerts"]  # imported inside a function
    assert "fleet.tasks" not in GRAPH["fleet.alerts"]


def test_there_are_no_import_cycles():
    new = _cycles() - KNOWN_CYCLES
    assert not new, f"import cycles: {[sorted(c) for c in new]}"


def test_jobs_never_imports_fleet():
    assert not _edges("jobs", "fleet")


def test_fleet_reaches_other_apps_through_named_doors_only():
    outside = {dst for app in ("jobs", "incidents", "accounts") for _, dst in _edges("fleet", app)}
    assert outside <= FLEET_DOORS, sorted(outside - FLEET_DOORS)


def test_jobs_reaches_accounts_through_named_doors_only():
    inside = {dst for _, dst in _edges("jobs", "accounts")}
    assert inside <= JOBS_DOORS_INTO_ACCOUNTS, sorted(inside - JOBS_DOORS_INTO_ACCOUNTS)


def test_accounts_reaches_other_apps_through_named_doors_only():
    outside = {dst for app in ("jobs", "fleet", "incidents") for _, dst in _edges("accounts", app)}
    assert outside <= ACCOUNTS_DOORS, sorted(outside - ACCOUNTS_DOORS)


def test_tasks_modules_are_leaves():
    offenders = {(src, dst) for src, targets in GRAPH.items() for dst in targets
                 if dst.endswith(".tasks") and src not in ENQUEUERS} - KNOWN_TASK_IMPORTERS
    assert not offenders, sorted(offenders)


def test_dev_tools_stay_outside_the_running_service():
    for app in ("buildboard", *RUNTIME_APPS):
        assert not _edges(app, "devtools"), app
    # The simulators talk to buildboard through its HTTP API only.
    for app in RUNTIME_APPS:
        assert not _edges("devtools", app), app
