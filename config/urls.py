from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

# Requests Django refuses while reading them (too many files, fields too large) say why.
handler400 = "workspace.views._common.bad_request"

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("workspace.api.urls")),
    path("", include("workspace.urls")),
]
