from django.urls import path

from studio import views

urlpatterns = [
    path("", views.home, name="home"),
    path("upload/", views.upload, name="upload"),
    path("uploads/", views.upload_start, name="upload_start"),
    path("uploads/<uuid:session_id>/parts/", views.upload_parts, name="upload_parts"),
    path("uploads/<uuid:session_id>/complete/", views.upload_complete, name="upload_complete"),
    path("uploads/<uuid:session_id>/abort/", views.upload_abort, name="upload_abort"),
    path("assets/<int:asset_id>/", views.asset, name="asset"),
    path("assets/<int:asset_id>/player/", views.asset_player, name="asset_player"),
    path("assets/<int:asset_id>/quality/", views.asset_quality, name="asset_quality"),
    path("assets/<int:asset_id>/hls/<path:path>", views.hls, name="hls"),
    path("assets/<int:asset_id>/preview/<path:path>", views.preview, name="preview"),
    path("assets/<int:asset_id>/download/<slug:what>", views.download, name="download"),
    path("assets/<int:asset_id>/lineage/<int:artifact_id>/", views.lineage, name="lineage"),
]
