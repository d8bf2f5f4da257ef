from django.conf import settings


def workspace(request) -> dict:
    return {"demo_mode": settings.DEMO_MODE}
