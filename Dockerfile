# `captcha serve` in a container: CPU only, the wheel with its shipped weights, a non-root user.
#   docker build -t captcha-serve .   then   docker run -p 8000:8000 -e CAPTCHA_API_KEY=... captcha-serve
# No TLS inside: put it behind a proxy that terminates TLS (and limits slow clients' headers).

FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 CAPTCHA_CACHE=/home/captcha/.cache/captcha
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
RUN useradd --create-home --uid 10001 captcha
USER captcha
WORKDIR /home/captcha
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4).status != 200)"]
# the shipped general reader unless a model is mounted: -v $PWD/checkpoints:/home/captcha/checkpoints:ro
ENTRYPOINT ["captcha", "serve", "--host", "0.0.0.0", "--port", "8000"]
