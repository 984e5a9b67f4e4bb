# The es-rerank proxy image.
#   GPU (default): CUDA 12 runtime + cuDNN 9 base, onnxruntime-gpu from `pip install .[gpu]`.
#   CPU:           docker build --build-arg BASE_IMAGE=ubuntu:24.04 --build-arg EXTRA=serve .
# Configuration comes from ES_RERANK_SERVE_* / OPENSEARCH_URL environment variables; the exported
# model is mounted at /models/reranker (see docker-compose.yml).
ARG BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

ARG EXTRA=gpu
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/es-rerank
ENV PATH=/opt/es-rerank/bin:$PATH

WORKDIR /src
COPY setup.py README.md ./
COPY es_rerank ./es_rerank
COPY training ./training
COPY export ./export
RUN pip install ".[${EXTRA}]" \
 && cd / && rm -rf /src \
 && useradd --system --uid 10001 --no-create-home esrerank

WORKDIR /
USER esrerank
ENV ES_RERANK_SERVE_HOST=0.0.0.0 \
    ES_RERANK_SERVE_PORT=9201 \
    ES_RERANK_SERVE_MODEL=/models/reranker \
    ES_RERANK_NO_PROGRESS=1
EXPOSE 9201

# Liveness only; compose checks readiness (model loaded, OpenSearch reachable) on /_rerank/ready.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
  CMD python3 -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/_rerank/health' % os.environ.get('ES_RERANK_SERVE_PORT', '9201'), timeout=4)"

# SIGTERM drains: readiness false, then in-flight requests finish (see --drain-* options).
STOPSIGNAL SIGTERM
ENTRYPOINT ["es-rerank", "serve"]
