from django.apps import AppConfig
from django.db.models.signals import post_save


class WorkspaceConfig(AppConfig):
    name = "workspace"
    verbose_name = "Atelier workspace"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from workspace import observability
        from workspace.models import ApiCall

        observability.install_log_context()

        # Metrics only, no logic: every API call the worker records is counted where it is recorded.
        def count_api_call(sender, instance, created: bool, **_kwargs) -> None:
            if created:
                observability.observe_api_call(instance)

        post_save.connect(count_api_call, sender=ApiCall, weak=False, dispatch_uid="metrics-api-call")

        from axes.signals import user_locked_out

        from workspace.signin import record_lockout

        user_locked_out.connect(record_lockout, dispatch_uid="workspace.signin.record_lockout")
