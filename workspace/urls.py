from django.urls import path

from workspace import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("projects/new", views.project_create, name="project_create"),
    path("spend/", views.my_spend, name="my_spend"),
    path("spend/dashboard", views.spend_dashboard, name="spend_dashboard"),
    path("spend/dashboard.csv", views.spend_csv, name="spend_csv"),
    path("p/<int:project_id>/", views.project, name="project"),
    path("p/<int:project_id>/settings", views.project_settings, name="project_settings"),
    path("p/<int:project_id>/archive", views.project_archive, name="project_archive"),
    path("p/<int:project_id>/members", views.members, name="members"),
    path("p/<int:project_id>/members/<int:membership_id>/role", views.member_role, name="member_role"),
    path("p/<int:project_id>/members/<int:membership_id>/remove", views.member_remove, name="member_remove"),
    path("p/<int:project_id>/jobs", views.job_create, name="job_create"),
    path("p/<int:project_id>/estimate", views.estimate, name="estimate"),
    path("p/<int:project_id>/jobs/<int:job_id>/", views.job_detail, name="job_detail"),
    path("p/<int:project_id>/jobs/<int:job_id>/card", views.job_card, name="job_card"),
    path("p/<int:project_id>/jobs/<int:job_id>/cancel", views.job_cancel, name="job_cancel"),
    path("p/<int:project_id>/jobs/<int:job_id>/retry", views.job_retry, name="job_retry"),
    path("p/<int:project_id>/references", views.references, name="references"),
    path(
        "p/<int:project_id>/references/<int:reference_id>/remove",
        views.reference_remove,
        name="reference_remove",
    ),
    path(
        "p/<int:project_id>/references/<int:reference_id>/<str:variant>",
        views.reference_file,
        name="reference_file",
    ),
    path("p/<int:project_id>/edit", views.edit, name="edit"),
    path("p/<int:project_id>/jobs/<int:job_id>/reproduce", views.job_reproduce, name="job_reproduce"),
    path("p/<int:project_id>/jobs/<int:job_id>/preview", views.job_preview, name="job_preview"),
    path("p/<int:project_id>/images/<int:image_id>/family", views.image_family, name="image_family"),
    path(
        "p/<int:project_id>/images/<int:image_id>/pasted/<str:variant>",
        views.image_composite,
        name="image_composite",
    ),
    path("p/<int:project_id>/images/<int:image_id>/", views.image_detail, name="image_detail"),
    path("p/<int:project_id>/images/<int:image_id>/file", views.image_file, name="image_file"),
    path("p/<int:project_id>/images/<int:image_id>/thumb", views.image_thumb, name="image_thumb"),
    path("p/<int:project_id>/images/<int:image_id>/download", views.image_download, name="image_download"),
]
