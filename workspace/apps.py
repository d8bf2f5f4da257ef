from django.apps import AppConfig


class WorkspaceConfig(AppConfig):
    name = "workspace"
    verbose_name = "Atelier workspace"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from axes.signals import user_locked_out

        from workspace.signin import record_lockout

        user_locked_out.connect(record_lockout, dispatch_uid="workspace.signin.record_lockout")
