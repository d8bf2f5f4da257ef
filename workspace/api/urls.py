"""/api/v1/: every route the API has."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView

from workspace.api import campaigns, conversations, views

app_name = "api"

P = "projects/<int:project_id>"

urlpatterns = [
    path("projects", views.project_list, name="project-list"),
    path(f"{P}", views.project_detail, name="project-detail"),
    path(f"{P}/jobs", views.job_create, name="job-create"),
    path(f"{P}/edits", views.edit_create, name="edit-create"),
    path(f"{P}/jobs/<int:job_id>", views.job_detail, name="job-detail"),
    path(f"{P}/jobs/<int:job_id>/cancel", views.job_cancel, name="job-cancel"),
    path(f"{P}/jobs/<int:job_id>/retry", views.job_retry, name="job-retry"),
    path(f"{P}/images", views.image_list, name="image-list"),
    path(f"{P}/images/<int:image_id>", views.image_detail, name="image-detail"),
    path(f"{P}/images/<int:image_id>/download", views.image_download, name="image-download"),
    path(f"{P}/references", views.reference_upload, name="reference-upload"),
    path(f"{P}/templates", views.template_list, name="template-list"),
    path(f"{P}/campaigns", views.campaign_list, name="campaign-list"),
    path(f"{P}/campaigns/batches", views.campaign_batch_create, name="campaign-batch-create"),
    path(f"{P}/campaigns/grids", campaigns.campaign_grid_create, name="campaign-grid-create"),
    path(f"{P}/campaigns/<int:campaign_id>", views.campaign_detail, name="campaign-detail"),
    path(f"{P}/campaigns/<int:campaign_id>/confirm", campaigns.campaign_confirm, name="campaign-confirm"),
    path(f"{P}/campaigns/<int:campaign_id>/pause", views.campaign_pause, name="campaign-pause"),
    path(f"{P}/campaigns/<int:campaign_id>/resume", views.campaign_resume, name="campaign-resume"),
    path(f"{P}/campaigns/<int:campaign_id>/cancel", views.campaign_cancel, name="campaign-cancel"),
    path(f"{P}/campaigns/<int:campaign_id>/retry", views.campaign_retry, name="campaign-retry"),
    path(
        f"{P}/images/<int:image_id>/conversations",
        conversations.conversation_start,
        name="conversation-start",
    ),
    path(f"{P}/conversations", conversations.conversation_list, name="conversation-list"),
    path(
        f"{P}/conversations/<int:conversation_id>",
        conversations.conversation_detail,
        name="conversation-detail",
    ),
    path(
        f"{P}/conversations/<int:conversation_id>/turns",
        conversations.turn_create,
        name="conversation-turns",
    ),
    path(f"{P}/webhooks", views.webhook_list, name="webhook-list"),
    path(f"{P}/webhooks/<int:endpoint_id>", views.webhook_detail, name="webhook-detail"),
    path(f"{P}/webhooks/<int:endpoint_id>/rotate", views.webhook_rotate, name="webhook-rotate"),
    path(f"{P}/webhooks/<int:endpoint_id>/ping", views.webhook_ping, name="webhook-ping"),
    path(f"{P}/webhooks/<int:endpoint_id>/deliveries", views.webhook_deliveries, name="webhook-deliveries"),
    path(
        f"{P}/webhooks/<int:endpoint_id>/deliveries/<int:delivery_id>/redeliver",
        views.webhook_redeliver,
        name="webhook-redeliver",
    ),
    path("spend/me", views.my_spend, name="my-spend"),
    path("spend/users", views.user_spend, name="user-spend"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", views.docs, name="docs"),
    # Last: any other address under /api/v1/ is a 404 in the API's error shape, not an HTML page.
    re_path(r"^(?P<rest>.*)$", views.not_found, name="not-found"),
]
