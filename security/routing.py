from django.urls import path

from security.consumers import SecurityAlertsConsumer

websocket_urlpatterns = [path("ws/security/alerts/", SecurityAlertsConsumer.as_asgi())]
