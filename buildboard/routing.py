"""Websocket routes of every app."""

from incidents.routing import websocket_urlpatterns as incidents_ws
from jobs.routing import websocket_urlpatterns as jobs_ws

websocket_urlpatterns = [*jobs_ws, *incidents_ws]
