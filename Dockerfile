# syntax=docker/dockerfile:1
# loyalty-bot as a container: built from the locked dependencies, run as an unprivileged user,
# the store on the /data volume, listening on 0.0.0.0:8080. Put a TLS reverse proxy in front
# (docs/deploy.md). Build: docker build -t loyalty-bot .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The whole tree is copied because the build reads more than src/ (the default flows and the
# sample orders are compiled in, sled is vendored). Cache mounts keep the registry and target/ between builds;
# the release profile links with fat LTO, so a cold build takes several minutes.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin loyalty-bot \
    && install -m 0755 target/release/loyalty-bot /usr/local/bin/loyalty-bot

FROM debian:bookworm-slim
# ca-certificates: the Send API, ManyChat and the shop are called over TLS (rustls reads the
# system roots).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 loyalty \
    && useradd --system --uid 10001 --gid loyalty --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin loyalty \
    && mkdir /data \
    && chown loyalty:loyalty /data
COPY --from=build /usr/local/bin/loyalty-bot /usr/local/bin/loyalty-bot
# Defaults, flows and the fixture shop's sample orders are built into the binary. Set keys with
# LOYALTY__<SECTION>__<KEY>, or mount a config file (any subset of keys) and name it in
# LOYALTY_CONFIG, e.g. -v ./config.toml:/etc/loyalty-bot/config.toml:ro
# -e LOYALTY_CONFIG=/etc/loyalty-bot/config.toml.
WORKDIR /data
ENV LOYALTY__STORE__PATH=/data \
    LOYALTY__SERVER__BIND=0.0.0.0:8080
VOLUME ["/data"]
EXPOSE 8080
USER loyalty:loyalty
# SIGTERM drains, finishes in-flight work and flushes within server.shutdown_timeout_secs
# (10 s by default): give `docker stop` more than that (`--stop-timeout 20`, or
# `stop_grace_period: 20s` in Compose). No HEALTHCHECK: the slim image has no HTTP client;
# let the orchestrator or proxy probe GET /healthz.
STOPSIGNAL SIGTERM
ENTRYPOINT ["loyalty-bot"]
CMD ["serve"]
