from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/jobs/<int:job_id>/", consumers.JobConsumer.as_asgi()),
    path("ws/builds/", consumers.BuildsConsumer.as_asgi()),
    path("ws/builds/<int:build_id>/", consumers.BuildConsumer.as_asgi()),
]
