from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations telemetry (metrics)"

    def ready(self) -> None:
        from core.services import event_sink_register
        from ops.recorders import event_metrics_record

        # Durations are read off the events the apps already record (unit.done,
        # rendition.playable, job.published, ...), so the apps carry no metrics code.
        event_sink_register(event_metrics_record)
