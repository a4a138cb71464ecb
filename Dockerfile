# feeds service image. Build: docker build -t feeds .
# Run:   docker run -p 8080:8080 -v /path/to/articles:/data/articles:ro \
#          -v feeds-state:/data/state -v feeds-output:/data/output \
#          -e FEEDS_BASE_URL=http://feeds.example.com:8080/ feeds
# (FEEDS_BASE_URL: the address readers use; without it the feeds link to http://127.0.0.1:8080/)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    FEEDS_ARTICLES=/data/articles FEEDS_OUTPUT=/data/output FEEDS_STATE=/data/state/feeds.db \
    FEEDS_SERVER__HOST=0.0.0.0 FEEDS_SERVER__PORT=8080

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY feeds ./feeds
COPY config ./config
COPY service.py ./
RUN pip install --no-cache-dir -c constraints.txt . \
    && useradd --system --uid 10001 feeds \
    && mkdir -p /data/articles /data/output /data/state \
    && chown -R feeds /data/output /data/state

USER feeds
EXPOSE 8080
VOLUME ["/data/state", "/data/output"]
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"
STOPSIGNAL SIGTERM
CMD ["python", "service.py", "--config", "config/feeds.toml"]
