# feldera-exporter: Prometheus exporter and alerting sidecar for Feldera's pipeline-manager API.
#
#   docker build -t feldera-exporter .
#   docker run -p 10027:10027 -e FELDERA_URL=http://feldera:8080 -e FELDERA_API_KEY=apikey:... feldera-exporter
#   docker run -p 10027:10027 -v "$PWD/config.yaml:/etc/feldera-exporter/config.yaml:ro" \
#       -v "$PWD/api-key:/run/secrets/feldera_api_key:ro" feldera-exporter --config /etc/feldera-exporter/config.yaml
#
# The base image is pinned by tag and digest (python:3.11.10-slim-bookworm, linux/amd64+arm64 index). To move to a
# newer patch release: docker buildx imagetools inspect python:3.11-slim-bookworm, then update both lines below.

FROM python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16 AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
# exporter/mixin/runbooks.md is a link to the runbooks: the wheel carries a copy of them.
COPY docs/runbooks.md ./docs/
# A self-contained virtualenv: the runtime stage copies it and nothing else (no pip, no sources, no build cache).
RUN python -m venv /opt/feldera-exporter \
    && /opt/feldera-exporter/bin/pip install --no-cache-dir ".[web]"

FROM python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16
LABEL org.opencontainers.image.title="feldera-exporter" \
      org.opencontainers.image.description="Prometheus exporter and alerting sidecar for Feldera" \
      org.opencontainers.image.licenses="MIT"
ENV PATH=/opt/feldera-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid exporter --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin exporter \
    && mkdir -p /etc/feldera-exporter /var/lib/feldera-exporter \
    && chown exporter:exporter /var/lib/feldera-exporter
COPY --from=build /opt/feldera-exporter /opt/feldera-exporter
# Numeric UID so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# State (reset watches) goes here when reset_watches.state_file points into it; mount a volume to keep it.
VOLUME ["/var/lib/feldera-exporter"]
EXPOSE 10027
# No curl in the image: Python's urllib is. Plain HTTP only: with TLS in the web config, rely on the
# orchestrator's probes (Kubernetes) instead, or adapt the URL.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:10027/-/healthy', timeout=4).status != 200)"]
ENTRYPOINT ["feldera-exporter"]
CMD ["run"]
