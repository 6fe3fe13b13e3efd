# The API image: the OpenAI-compatible proxy with its SNAC codec (`python -m app`, port 9091).
# stress-test.yaml runs the load generator from this same image, so the dev requirements are in.
#
#   docker build -t tts-api .                                     # PyPI torch (CUDA on x86_64)
#   docker build -t tts-api-cpu \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .   # CPU-only torch
#
# vLLM is not in this image: the engine runs from vllm/vllm-openai (GPU) or Dockerfile.vllm-cpu.
FROM python:3.11-slim

# Empty: torch comes from PyPI with the rest. Set: torch alone is installed from that index
# first (its `+cpu` local version satisfies requirements.txt's `torch==X`, so it stays).
ARG TORCH_INDEX_URL=""

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# g++: torch.compile (TORCH_COMPILE=true) builds C++ kernels on CPU and Triton launchers on CUDA.
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

COPY requirements.txt requirements-dev.txt ./
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple \
            "$(grep -E '^torch==' requirements.txt)"; \
    fi \
    && pip install -r requirements.txt -r requirements-dev.txt

RUN useradd --create-home --uid 1000 --user-group app \
    && mkdir -p /data /cache/huggingface \
    && chown -R app:app /data /cache

# bench/ joins this list once it holds files: COPY fails on a path missing from the context.
COPY app/ ./app/
COPY stack/ ./stack/
COPY demo_model/ ./demo_model/
COPY stress_test/ ./stress_test/

# Named volumes mounted on /data and /cache start as copies of these app-owned directories.
ENV HOST=0.0.0.0 \
    PORT=9091 \
    DATA_DIR=/data \
    HF_HOME=/cache/huggingface \
    TORCHINDUCTOR_CACHE_DIR=/cache/torchinductor
VOLUME ["/data", "/cache"]

USER app
EXPOSE 9091

# /health is 200 only while both the engine and the codec worker are up. The start period covers
# the SNAC download and the wait for the engine (ENGINE_STARTUP_TIMEOUT_S).
HEALTHCHECK --interval=15s --timeout=5s --start-period=360s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '9091') + '/health', timeout=4)"]

CMD ["python", "-m", "app"]
