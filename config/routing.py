"""Websocket routes of every app, in one list for config.asgi."""

websocket_urlpatterns: list = []
