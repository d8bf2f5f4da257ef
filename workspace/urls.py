from django.urls import path

from workspace.views import (
    account,
    audit,
    campaigns,
    conversations,
    gallery,
    images,
    kits,
    library,
    metrics,
    projects,
    spend,
    studio,
    webhooks,
)

urlpatterns = [
    # Projects and their people (views/projects.py).
    path("", projects.home, name="home"),
    path("healthz", projects.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("projects/new", projects.project_create, name="project_create"),
    path("p/<int:project_id>/settings", projects.project_settings, name="project_settings"),
    path("p/<int:project_id>/archive", projects.project_archive, name="project_archive"),
    # Webhooks, on the settings page (views/webhooks.py).
    path("p/<int:project_id>/webhooks", webhooks.webhook_add, name="webhook_add"),
    path(
        "p/<int:project_id>/webhooks/<int:endpoint_id>/remove", webhooks.webhook_remove, name="webhook_remove"
    ),
    path(
        "p/<int:project_id>/webhooks/<int:endpoint_id>/rotate", webhooks.webhook_rotate, name="webhook_rotate"
    ),
    path("p/<int:project_id>/webhooks/<int:endpoint_id>/ping", webhooks.webhook_ping, name="webhook_ping"),
    path(
        "p/<int:project_id>/webhooks/deliveries/<int:delivery_id>/redeliver",
        webhooks.webhook_redeliver,
        name="webhook_redeliver",
    ),
    path("p/<int:project_id>/members", projects.members, name="members"),
    path("p/<int:project_id>/members/<int:membership_id>/role", projects.member_role, name="member_role"),
    path(
        "p/<int:project_id>/members/<int:membership_id>/remove", projects.member_remove, name="member_remove"
    ),
    # The studio: the project page, its jobs and their cards (views/studio.py).
    path("p/<int:project_id>/", studio.project, name="project"),
    path("p/<int:project_id>/jobs", studio.job_create, name="job_create"),
    path("p/<int:project_id>/estimate", studio.estimate, name="estimate"),
    path("p/<int:project_id>/prompt-preview", studio.prompt_preview, name="prompt_preview"),
    path("p/<int:project_id>/jobs/<int:job_id>/", studio.job_detail, name="job_detail"),
    path("p/<int:project_id>/jobs/<int:job_id>/card", studio.job_card, name="job_card"),
    path("p/<int:project_id>/jobs/<int:job_id>/cancel", studio.job_cancel, name="job_cancel"),
    path("p/<int:project_id>/jobs/<int:job_id>/retry", studio.job_retry, name="job_retry"),
    path("p/<int:project_id>/jobs/<int:job_id>/reproduce", studio.job_reproduce, name="job_reproduce"),
    path("p/<int:project_id>/jobs/<int:job_id>/preview", studio.job_preview, name="job_preview"),
    path("p/<int:project_id>/jobs/<int:job_id>/markup", studio.job_markup, name="job_markup"),
    # One image, its files and what is done to it (views/images.py).
    path("p/<int:project_id>/images/<int:image_id>/", images.image_detail, name="image_detail"),
    path("p/<int:project_id>/images/<int:image_id>/file", images.image_file, name="image_file"),
    path("p/<int:project_id>/images/<int:image_id>/thumb", images.image_thumb, name="image_thumb"),
    path("p/<int:project_id>/images/<int:image_id>/download", images.image_download, name="image_download"),
    path(
        "p/<int:project_id>/images/<int:image_id>/pasted/<str:variant>",
        images.image_composite,
        name="image_composite",
    ),
    path(
        "p/<int:project_id>/images/<int:image_id>/as/<str:target>", images.image_convert, name="image_convert"
    ),
    path("p/<int:project_id>/images/<int:image_id>/family", images.image_family, name="image_family"),
    path(
        "p/<int:project_id>/images/<int:image_id>/favourite", images.image_favourite, name="image_favourite"
    ),
    path("p/<int:project_id>/images/<int:image_id>/review", images.image_review, name="image_review"),
    path("p/<int:project_id>/images/<int:image_id>/comment", images.image_comment, name="image_comment"),
    path("p/<int:project_id>/images/<int:image_id>/delete", images.image_delete, name="image_delete"),
    # The reference library and edits (views/library.py).
    path("p/<int:project_id>/references", library.references, name="references"),
    path(
        "p/<int:project_id>/references/<int:reference_id>/remove",
        library.reference_remove,
        name="reference_remove",
    ),
    path(
        "p/<int:project_id>/references/<int:reference_id>/<str:variant>",
        library.reference_file,
        name="reference_file",
    ),
    path("p/<int:project_id>/edit", library.edit, name="edit"),
    # Brand kits and prompt templates, each save a new version (views/kits.py).
    path("p/<int:project_id>/kits/", kits.kit_list, name="kit_list"),
    path("p/<int:project_id>/kits/new", kits.kit_create, name="kit_create"),
    path("p/<int:project_id>/kits/preview", kits.kit_preview, name="kit_preview"),
    path("p/<int:project_id>/kits/<int:kit_id>/", kits.kit_detail, name="kit_detail"),
    path("p/<int:project_id>/kits/<int:kit_id>/edit", kits.kit_edit, name="kit_edit"),
    path("p/<int:project_id>/kits/<int:kit_id>/archive", kits.kit_archive, name="kit_archive"),
    path("p/<int:project_id>/kits/<int:kit_id>/v<int:number>", kits.kit_version, name="kit_version"),
    path("p/<int:project_id>/templates/", kits.template_list, name="template_list"),
    path("p/<int:project_id>/templates/new", kits.template_create, name="template_create"),
    path("p/<int:project_id>/templates/preview", kits.template_preview_view, name="template_preview"),
    path("p/<int:project_id>/templates/<int:template_id>/", kits.template_detail, name="template_detail"),
    path("p/<int:project_id>/templates/<int:template_id>/edit", kits.template_edit, name="template_edit"),
    path(
        "p/<int:project_id>/templates/<int:template_id>/archive",
        kits.template_archive,
        name="template_archive",
    ),
    path(
        "p/<int:project_id>/templates/<int:template_id>/v<int:number>",
        kits.template_version,
        name="template_version",
    ),
    path("p/<int:project_id>/references/credential", conversations.credential_check, name="credential_check"),
    # Conversations about an image (views/conversations.py).
    path(
        "p/<int:project_id>/images/<int:image_id>/converse",
        conversations.conversation_start,
        name="conversation_start",
    ),
    path(
        "p/<int:project_id>/conversations/<int:conversation_id>/",
        conversations.conversation,
        name="conversation",
    ),
    path(
        "p/<int:project_id>/conversations/<int:conversation_id>/turns",
        conversations.turn_send,
        name="turn_send",
    ),
    path(
        "p/<int:project_id>/conversations/<int:conversation_id>/turns/<int:turn_id>/branch",
        conversations.turn_branch,
        name="turn_branch",
    ),
    # The gallery, bulk actions, comparison and prompt history (views/gallery.py).
    path("p/<int:project_id>/gallery", gallery.gallery_view, name="gallery"),
    path("p/<int:project_id>/bulk", gallery.bulk, name="bulk"),
    path("p/<int:project_id>/compare", gallery.compare, name="compare"),
    path("p/<int:project_id>/prompts", gallery.prompt_history, name="project_prompts"),
    path("prompts/", gallery.prompt_history, name="my_prompts"),
    # Campaigns: variant grids and catalog batches (views/campaigns.py).
    path("p/<int:project_id>/campaigns/", campaigns.campaign_list, name="campaigns"),
    path("p/<int:project_id>/campaigns/grid", campaigns.campaign_grid_new, name="campaign_grid_new"),
    path("p/<int:project_id>/campaigns/batch", campaigns.campaign_batch_new, name="campaign_batch_new"),
    path(
        "p/<int:project_id>/campaigns/<int:campaign_id>/", campaigns.campaign_detail, name="campaign_detail"
    ),
    path(
        "p/<int:project_id>/campaigns/<int:campaign_id>/progress",
        campaigns.campaign_progress,
        name="campaign_progress",
    ),
    path(
        "p/<int:project_id>/campaigns/<int:campaign_id>/confirm",
        campaigns.campaign_confirm,
        name="campaign_confirm",
    ),
    path(
        "p/<int:project_id>/campaigns/<int:campaign_id>/control",
        campaigns.campaign_control,
        name="campaign_control",
    ),
    path("p/<int:project_id>/campaigns/<int:campaign_id>/zip", campaigns.campaign_zip, name="campaign_zip"),
    path(
        "p/<int:project_id>/campaigns/<int:campaign_id>/jobs/<int:job_id>",
        campaigns.campaign_cell,
        name="campaign_cell",
    ),
    path(
        "p/<int:project_id>/campaigns/<int:campaign_id>/jobs/<int:job_id>/star",
        campaigns.campaign_cell_star,
        name="campaign_cell_star",
    ),
    path(
        "p/<int:project_id>/campaigns/<int:campaign_id>/jobs/<int:job_id>/review",
        campaigns.campaign_cell_review,
        name="campaign_cell_review",
    ),
    path(
        "p/<int:project_id>/campaigns/<int:campaign_id>/jobs/<int:job_id>/default",
        campaigns.campaign_cell_default,
        name="campaign_cell_default",
    ),
    # Spend (views/spend.py).
    path("spend/", spend.my_spend, name="my_spend"),
    path("spend/badge", spend.spend_badge, name="spend_badge"),
    path("spend/dashboard", spend.spend_dashboard, name="spend_dashboard"),
    path("spend/dashboard.csv", spend.spend_csv, name="spend_csv"),
    path("spend/budgets", spend.spend_budget_set, name="spend_budget_set"),
    # API tokens on the account page (views/account.py).
    path("account/tokens", account.tokens, name="account_tokens"),
    path("account/tokens/revoke", account.token_revoke_view, name="token_revoke"),
    # The audit trail, for staff (views/audit.py).
    path("audit/", audit.audit_log, name="audit"),
]
