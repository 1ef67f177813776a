"""Websocket routes of every app, in one list for config.asgi."""

from django.urls import path

from backups.consumers import BackupProgressConsumer
from console.consumers import JobConsumer, JobsConsumer
from security.routing import websocket_urlpatterns as security_websockets
from studio.consumers import AssetProgressConsumer

websocket_urlpatterns: list = [
    path("ws/studio/assets/<int:asset_id>/", AssetProgressConsumer.as_asgi(), name="studio-progress"),
    path("ws/backups/<str:kind>/<int:pk>/", BackupProgressConsumer.as_asgi(), name="backups-progress"),
]
websocket_urlpatterns += security_websockets
websocket_urlpatterns += [
    path("ws/ops/jobs/", JobsConsumer.as_asgi(), name="console-jobs"),
    path("ws/ops/jobs/<int:job_id>/", JobConsumer.as_asgi(), name="console-job"),
]
