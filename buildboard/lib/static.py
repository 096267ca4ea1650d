"""WhiteNoise, sync or async, answering with whole files.

WhiteNoise's middleware is sync-only, and its streamed file responses make Django's ASGI handler drain
a sync iterator chunk by chunk through thread hops. Our static files are small: they are read whole,
and only static paths pay for WhiteNoise's (in-memory) lookup."""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, *args, **kwargs):
        super().__init__(get_response, *args, **kwargs)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.is_async:
            return self._acall(request)
        static_file = self._static_file(request)
        if static_file is not None:
            return self._serve_in_memory(static_file, request)
        return self.get_response(request)

    async def _acall(self, request: HttpRequest):
        static_file = self._static_file(request)
        if static_file is not None:
            return self._serve_in_memory(static_file, request)
        return await self.get_response(request)

    def _static_file(self, request: HttpRequest):
        if not request.path_info.startswith(self.static_prefix):
            return None
        return self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)

    @staticmethod
    def _serve_in_memory(static_file, request: HttpRequest) -> HttpResponse:
        """Our static files are small; reading one whole avoids Django draining a sync file iterator
        chunk by chunk from the event loop (and its warning)."""
        response = static_file.get_response(request.method, request.META)
        body = b""
        if response.file is not None:
            with response.file as f:
                body = f.read()
        http_response = HttpResponse(body, status=int(response.status))
        del http_response["Content-Type"]
        for key, value in response.headers:
            http_response[key] = value
        return http_response
