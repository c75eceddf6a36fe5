# The captioning page on a slim Python, as a non-root user. Build and run:
#   docker build -t medcap .
#   docker run -p 7860:7860 -v medcap-data:/app/data --env-file .env medcap
# Every setting is an environment variable (README, "Configuration"); secrets come in at run
# time (--env-file, -e, or the platform's secrets), never in the image.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    MEDCAP_DATA_DIR=/app/data

# The wheels bring their own native libraries; the slim base has the C/C++ runtimes they link.
RUN useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin medcap

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY app.py sharelink.py ./
COPY static/ static/
COPY pipeline/ pipeline/
COPY ingest/ ingest/

# data/: the Milvus Lite file, the ONNX model cache and the examples; kept across containers.
# .gradio/: where Gradio keeps a share link's certificate.
RUN mkdir -p /app/data /app/.gradio && chown 1000:1000 /app/data /app/.gradio
VOLUME ["/app/data"]

USER 1000:1000
EXPOSE 7860

HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GRADIO_SERVER_PORT', '7860') + '/', timeout=4)"]

CMD ["python", "app.py"]
