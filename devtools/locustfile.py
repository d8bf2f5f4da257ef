"""`make load`: people who sign in and submit the generation form, as fast as the server answers.

    locust -f devtools/locustfile.py --headless -u 50 -r 50 -t 20s --host http://127.0.0.1:8000

Against any running workspace: LOAD_USERNAME, LOAD_PASSWORD and LOAD_PROJECT (an id the account may
submit to); `make load` starts a server of its own and sets them (devtools/load.py).
"""

import os

from locust import HttpUser, constant, task

GENERATION_FORM = {
    "prompt": "A lemon on a blue tiled table, morning light",
    "model": "gpt-image-2",
    "size": "square",
    "quality": "low",
    "output_format": "png",
    "output_compression": "100",
    "background": "auto",
    "moderation": "auto",
    "complexity": "",
    "n": "1",
}


class Submitter(HttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.client.get("/accounts/login/", name="login page")
        self.client.post(
            "/accounts/login/",
            {
                "username": os.environ["LOAD_USERNAME"],
                "password": os.environ["LOAD_PASSWORD"],
                "csrfmiddlewaretoken": self.client.cookies["csrftoken"],
            },
            name="log in",
            allow_redirects=False,
        )
        self.path = f"/p/{os.environ['LOAD_PROJECT']}/jobs"

    @task
    def submit(self) -> None:
        # As the page's form does without htmx: a redirect back to the project is a job created.
        data = GENERATION_FORM | {"csrfmiddlewaretoken": self.client.cookies["csrftoken"]}
        with self.client.post(
            self.path, data, name="submit", allow_redirects=False, catch_response=True
        ) as r:
            if r.status_code != 302:
                r.failure(f"status {r.status_code}")
