# Two images from one file. `production` (the default: the last stage) holds only what production runs;
# `demo` adds the stand-in image service for `docker compose --profile demo` (demo mode, no OpenAI key).
FROM python:3.11-slim AS app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
# libcairo draws SVG answers' thumbnails (cairosvg); nothing else needs a system library.
RUN apt-get update && apt-get install -y --no-install-recommends libcairo2 && rm -rf /var/lib/apt/lists/*
# Only what production runs: no stand-in, dev tools, tests or bench results (.dockerignore keeps all but the
# stand-in out of the context too). setuptools finds just config and workspace here.
COPY pyproject.toml manage.py ./
COPY config ./config
COPY workspace ./workspace
RUN pip install --no-cache-dir .
COPY templates ./templates
COPY static ./static
RUN useradd --create-home atelier && mkdir -p /data/media /app/var && chown -R atelier /data /app/var
USER atelier
EXPOSE 8000

# The stand-in for the Images API (standard library and Pillow, both already installed), in an image of
# its own so the production image never carries it.
FROM app AS demo
COPY standin ./standin
EXPOSE 8765
CMD ["python", "-m", "standin", "--host", "0.0.0.0", "--port", "8765", "--latency", "3", "--quiet"]

FROM app AS production
