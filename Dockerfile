FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
# Only what production runs: no stand-in, dev tools, tests or bench results (.dockerignore keeps them out
# of the context too). setuptools finds just config and workspace here.
COPY pyproject.toml manage.py ./
COPY config ./config
COPY workspace ./workspace
RUN pip install --no-cache-dir .
COPY templates ./templates
COPY static ./static
RUN useradd --create-home atelier && mkdir -p /data/media /app/var && chown -R atelier /data /app/var
USER atelier
EXPOSE 8000
