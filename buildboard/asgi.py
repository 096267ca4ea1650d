"""ASGI entry point: HTTP through Django, websockets through Channels."""

import asyncio
import os

import django
from asgiref.sync import sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.urls import set_script_prefix

from buildboard.lib.requestthreads import in_borrowed_thread

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buildboard.settings")
django.setup(set_prefix=False)


class OneHopASGIHandler(ASGIHandler):
    """Django's ASGI handler, running the middleware chain and views in one (borrowed) thread per request.

    Our views and most middleware are synchronous. In its async mode Django calls each sync
    middleware's hooks through sync_to_async — about fourteen thread hops per request with the stack
    in settings.MIDDLEWARE, measured at ~8 ms of CPU per request. Loading the chain in sync mode and
    entering it once costs one hop; async views still work (Django adapts them)."""

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def __call__(self, scope, receive, send):
        """As Django's, with a long-lived thread for the request's sync code (buildboard/lib/requestthreads.py)."""
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await in_borrowed_thread(self.handle, scope, receive, send)

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


class ApiASGIHandler(OneHopASGIHandler):
    """The same URLs and views, loaded with settings.API_MIDDLEWARE (see buildboard/lib/apichain.py).

    A worker's request is also served in one thread hop, not three: Django's handler sends
    request_started, runs the chain and closes the response (which sends request_finished) in three
    separate hops to the sync thread, and under load each hop waits for the GIL behind the event loop.
    Here the signals, the chain and the close run in one hop, and only the finished answer goes back to
    the loop. A streamed answer (none of the worker API's) is sent and closed as Django does."""

    chain_is_async = False  # how settings.API_MIDDLEWARE is loaded

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        try:
            await self.serve(scope, body_file, send)
        finally:
            body_file.close()

    async def serve(self, scope, body_file, send) -> None:
        response = await sync_to_async(self._serve, thread_sensitive=True)(scope, body_file)
        await self.send_response(response, send)
        if response.streaming:
            await sync_to_async(response.close, thread_sensitive=True)()

    def _serve(self, scope, body_file):
        """request_started, the request through the chain, and (unless streamed) request_finished."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
        response._handler_class = self.__class__
        if not response.streaming:
            response.close()  # its content is in memory already; this sends request_finished
        return response

    def load_middleware(self, is_async: bool = False) -> None:
        # Django's loader reads settings.MIDDLEWARE; it runs once, when the handler is made at start-up.
        from django.conf import settings

        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.API_MIDDLEWARE
        try:
            ASGIHandler.load_middleware(self, is_async=self.chain_is_async)
        finally:
            settings.MIDDLEWARE = full


class LoopASGIHandler(ApiASGIHandler):
    """The lean chain for async views (the worker's log POST): the middleware, the view and the answer all
    run on the event loop, so the request never waits for a thread or for the GIL to come back to the
    loop. request_started and request_finished are sent on the loop as well: their receivers only reset
    this thread's database connections and caches, which the loop never opens (a view that needs the
    database goes to a thread for it, as channels' database_sync_to_async does)."""

    chain_is_async = True
    get_response_async = ASGIHandler.get_response_async  # Django's own: the async chain, awaited on the loop

    async def serve(self, scope, body_file, send) -> None:
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = await self.get_response_async(request)
        response._handler_class = self.__class__
        await self.send_response(response, send)
        # One loop turn between the answer and the request's after-work (request_finished, and the follow-up
        # an AnswerThen starts as it closes): the frames the request rang for this process's viewers are
        # sent in that turn, behind the answer but not behind that work.
        await asyncio.sleep(0)
        response.close()
        if (after := getattr(response, "after", None)) is not None:
            await after  # the request's thread is lent to the next one only once its work is done

    def resolve_request(self, request):
        """The operation for the request's method, not the route() dispatching to it (which is sync), from
        the match runs_on_loop() already made for this path."""
        match = resolve(request.path_info, request.method)
        if match is None:  # not served here (runs_on_loop said no); as Django would
            return super().resolve_request(request)
        request.resolver_match = match
        return match


django_asgi_app = OneHopASGIHandler()
api_asgi_app = ApiASGIHandler()
loop_asgi_app = LoopASGIHandler()


async def http_app(scope, receive, send):
    """Bearer requests under /api/v1/ take the lean chain, on the event loop if their view is async;
    everything else takes the full one."""
    if not is_lean(scope):
        app = django_asgi_app
    else:
        app = loop_asgi_app if runs_on_loop(scope) else api_asgi_app
    await app(scope, receive, send)


# Imported only after Django is set up, as the routing imports models.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from buildboard.lib.apichain import is_lean, resolve, runs_on_loop  # noqa: E402
from buildboard.routing import websocket_urlpatterns  # noqa: E402
from jobs.ingest import check_persistence  # noqa: E402

check_persistence()  # a 202 promises the part survives a Redis restart: refuse (or warn) if it would not

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
