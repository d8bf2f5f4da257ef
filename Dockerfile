FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml ./
COPY config ./config
COPY workspace ./workspace
RUN pip install --no-cache-dir .
COPY . .
RUN useradd --create-home atelier && mkdir -p /data/media /app/var && chown -R atelier /data /app/var
USER atelier
EXPOSE 8000
