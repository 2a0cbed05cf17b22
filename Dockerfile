# hlrsmpp: the SMPP 3.4 HLR lookup server in a slim, non-root image.
#
#   docker build -t hlrsmpp .
#   docker run -p 2775:2775 -p 8080:8080 -v hlrsmpp-data:/var/lib/hlrsmpp hlrsmpp
#
# Configuration: mount your file over /etc/hlrsmpp/hlrsmpp.yaml (the demo config is
# there by default, beside the HLR tables in /etc/hlrsmpp/hlr), and override ports and
# secrets with HLRSMPP_* variables (docs/configuration.md). Data (the SQLite store) lives
# in the /var/lib/hlrsmpp volume, with the generated admin token (admin_token) when
# HLRSMPP_ADMIN_TOKEN is not given. The demo config listens on 127.0.0.1; in the image both
# listeners take every interface (HLRSMPP_*_HOST), and -p decides what is published.
# See docs/operations.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HLRSMPP_STORAGE_PATH=/var/lib/hlrsmpp \
    HLRSMPP_SMPP_HOST=0.0.0.0 \
    HLRSMPP_HTTP_HOST=0.0.0.0 \
    HLRSMPP_LOG_FORMAT=json

WORKDIR /opt/hlrsmpp

# Dependencies first, at the pinned versions of constraints.txt: this layer is rebuilt
# only when pyproject.toml or constraints.txt change, not on every source change. The
# redis and postgres extras are in, so one image serves embedded (SQLite) and shared (Redis,
# Redis + PostgreSQL) deployments.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir hlrsmpp && touch hlrsmpp/__init__.py \
    && pip install -c constraints.txt ".[redis,postgres]" \
    && pip uninstall -y hlrsmpp \
    && rm -rf hlrsmpp build ./*.egg-info

# The server itself, a regular install: the HLR tables are package data. setup.py
# compiles the per-lookup codec, the group commit and the number draws
# (hlrsmpp/smpp/_speedups.c, hlrsmpp/accounts/_sqlite_batch.c, hlrsmpp/hlr/_resolve.c); the
# compiler and headers are removed in the same layer, and the build fails if any C
# module did not come out of it.
COPY setup.py ./
COPY hlrsmpp ./hlrsmpp
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev libsqlite3-dev \
    && pip install -c constraints.txt --no-deps . \
    && apt-get purge -y --auto-remove gcc libc6-dev libsqlite3-dev && rm -rf /var/lib/apt/lists/* \
    && (cd / && python -c "import hlrsmpp.smpp._speedups, hlrsmpp.accounts._sqlite_batch, hlrsmpp.hlr._resolve") \
    && hlrsmpp --help > /dev/null

# A system user owns the data; configuration stays read-only to it.
RUN groupadd --system --gid 10001 hlrsmpp \
    && useradd --system --uid 10001 --gid hlrsmpp --home-dir /var/lib/hlrsmpp \
       --shell /usr/sbin/nologin hlrsmpp \
    && mkdir -p /var/lib/hlrsmpp /etc/hlrsmpp \
    && chown hlrsmpp:hlrsmpp /var/lib/hlrsmpp
COPY conf /etc/hlrsmpp

VOLUME ["/var/lib/hlrsmpp"]
EXPOSE 2775 8080
USER 10001:10001
WORKDIR /var/lib/hlrsmpp

# 200 only while the SMPP listener serves, the store answers and the HLR tables are
# loaded. No curl in a slim image: Python's urllib fails (exit 1) on any other answer.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HLRSMPP_HTTP_PORT', '8080'), timeout=4)"]

# SIGTERM (docker stop) unbinds every session and flushes the store; SIGHUP reloads
# the HLR rules (docker kill -s HUP).
STOPSIGNAL SIGTERM
CMD ["hlrsmpp", "serve", "--config", "/etc/hlrsmpp/hlrsmpp.yaml"]
