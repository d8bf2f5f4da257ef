# Verbs a newcomer can guess. `make run` and `make test` work on a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/atelier
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
# Tests run with DEBUG off, as in production, minus HTTPS redirects and the collectstatic manifest.
TEST_ENV = DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) DEBUG=false \
	SECRET_KEY=test-only-secret-key-that-is-long-enough-for-django-checks \
	SECURE_SSL_REDIRECT=false STATIC_MANIFEST=false OPENAI_API_KEY=sk-test-not-a-real-key \
	CONN_MAX_AGE=0

.PHONY: run test load bench chaos lint fmt web worker beat standin services browser migrate

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

## Run the workspace on this machine (SQLite, no Redis, demo images unless OPENAI_API_KEY is set).
# Served as in production (gunicorn, DEBUG off) on loopback; ATELIER_LOCAL allows a generated secret
# and demo mode (config/settings.py). DEBUG=true make run gives Django's development server instead.
run: $(STAMP)
	ATELIER_LOCAL=true $(BIN)/python manage.py runall

## Run the whole test suite on Postgres and Redis, with Chromium for the browser journeys.
test: $(STAMP) services browser
	$(TEST_ENV) $(BIN)/python -m pytest $(PYTEST_ARGS)

## A burst of signed-in people submitting the form (locust, headless) against a `make run`-style server
## it starts itself on SQLite in a temporary folder; prints submits/s and p95. LOAD_ARGS="-u 50 -t 20s".
load: $(STAMP)
	@test -x $(BIN)/locust || $(BIN)/python -m pip install --quiet -e ".[load]"
	$(BIN)/python -m devtools.load $(LOAD_ARGS)

## Measure the pipeline and the gallery against the stand-in (see README for the figures it prints).
# The commands live in devtools/ (devtools/management/commands/bench*.py, kit in devtools/benchkit.py).
# Production settings (DEBUG off: no query logging in the worker or the timed views), minus HTTPS.
BENCH_ENV = DATABASE_URL=postgres://postgres@127.0.0.1:5432/atelier_bench REDIS_URL=redis://127.0.0.1:6379/14 \
	DEBUG=false SECRET_KEY=bench-only-secret-key-that-is-long-enough-for-django-checks \
	SECURE_SSL_REDIRECT=false STATIC_MANIFEST=false ALLOWED_HOSTS=localhost,testserver OPENAI_API_KEY=sk-bench-not-a-real-key
bench: $(STAMP) services
	@psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'atelier_bench'" | grep -q 1 \
	  || createdb -h 127.0.0.1 -U postgres atelier_bench
	$(BENCH_ENV) $(BIN)/python manage.py migrate -v0
	$(BENCH_ENV) $(BIN)/python manage.py bench $(BENCH_ARGS)
	$(BENCH_ENV) $(BIN)/python manage.py bench_gallery --reuse $(GALLERY_ARGS)
	$(BENCH_ENV) $(BIN)/python manage.py bench_api $(API_BENCH_ARGS)
	$(BENCH_ENV) $(BIN)/python manage.py bench_campaign $(CAMPAIGN_BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: $(STAMP)
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py migrate

web: $(STAMP)
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py runserver 127.0.0.1:$${PORT:-8000}

worker: $(STAMP)
	DEBUG=$${DEBUG:-true} $(BIN)/celery -A config worker --loglevel INFO

beat: $(STAMP)
	DEBUG=$${DEBUG:-true} $(BIN)/celery -A config beat --loglevel INFO

## The stand-in Images API in the foreground (standin/; needs no Django settings).
standin: $(STAMP)
	$(BIN)/python -m standin --port $${STANDIN_PORT:-8765}

# Postgres and Redis for tests and benchmarks: start them when they are down.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
	@for i in $$(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done

# Debian's Chromium for the Playwright journeys (Playwright cannot download browsers here).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

## Jobs over HTTP while workers, beat, Redis and Postgres are killed and restarted (devtools/chaoskit.py):
## private Redis and Postgres on free ports, nothing shared is touched. Exits non-zero on any violation.
chaos: $(STAMP)
	DEBUG=false SECRET_KEY=chaos-only-secret-key-that-is-long-enough-for-django-checks OPENAI_API_KEY=sk-chaos \
	  DATABASE_URL=postgres://postgres@127.0.0.1:1/replaced-by-the-private-cluster $(BIN)/python manage.py chaos $(CHAOS_ARGS)
