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
    path("p/<int:project_id>/images/<int:image_id>/", views.image_detail, name="image_detail"),
    path("p/<int:project_id>/images/<int:image_id>/file", views.image_file, name="image_file"),
    path("p/<int:project_id>/images/<int:image_id>/thumb", views.image_thumb, name="image_thumb"),
    path("p/<int:project_id>/images/<int:image_id>/download", views.image_download, name="image_download"),
]
