# faka: the worker fleet in a container, built from Debian 12 packages only.
#   docker compose up --scale worker=4    (see docker-compose.yml)
# Stages: build (compile), runtime (faka binaries), redis (Debian's redis-server).

# The build stage configures the whole project, tests included (meson finds
# every dependency at setup): libc6-dev is only a Recommends of gcc, and
# tests/meson.build requires the openssl program (test_http's TLS server).
# Checked on a debootstrap --variant=minbase bookworm tree, stage by stage.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev pkg-config meson ninja-build libhiredis-dev libuv1-dev libcjson-dev \
      libcurl4-gnutls-dev libssl-dev nettle-dev libcmocka-dev libhttp-parser-dev openssl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN meson setup /build --buildtype=release --prefix=/usr/local \
 && ninja -C /build \
 && meson install -C /build --skip-subprojects

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libhiredis0.14 libuv1 libcjson1 libcurl3-gnutls libnettle8 ca-certificates redis-tools \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home faka
COPY --from=build /usr/local/bin/faka-worker /usr/local/bin/faka-reaper /usr/local/bin/fakactl /usr/local/bin/
USER faka
# The worker handles SIGTERM itself (drain, then exit 0), also as PID 1.
STOPSIGNAL SIGTERM
ENTRYPOINT ["faka-worker"]

FROM debian:bookworm-slim AS redis
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
USER redis
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data"]
