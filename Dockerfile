# optibridge: one image for serve and worker. The database is an external PostgreSQL 14+
# (see compose.yaml); the embedded one is for single-machine use.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 optibridge
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install --no-cache-dir . && rm -rf /root/.cache
USER optibridge
ENV OPTIBRIDGE_HOST=0.0.0.0 OPTIBRIDGE_PORT=8080 OPTIBRIDGE_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/livez').status == 200 else 1)"
ENTRYPOINT ["optibridge"]
CMD ["serve", "--workers", "1"]
