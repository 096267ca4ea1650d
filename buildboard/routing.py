"""Websocket routes of every app."""

from fleet.routing import websocket_urlpatterns as fleet_ws
from incidents.routing import websocket_urlpatterns as incidents_ws
from jobs.routing import websocket_urlpatterns as jobs_ws

websocket_urlpatterns = [*jobs_ws, *fleet_ws, *incidents_ws]
