"""Django's model backend, loading the session's user with SQL written once (see hot_queries).

Every request of a logged-in user loads them: the job card's one-second poll included.
"""

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import ValidationError

from workspace import hot_queries


class SessionUserBackend(ModelBackend):
    def get_user(self, user_id):
        try:
            user = hot_queries.user_by_id(user_id)
        except (ValidationError, ValueError, TypeError):  # a session holding something that is not an id
            return None
        return user if user is not None and self.user_can_authenticate(user) else None
