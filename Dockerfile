# syntax=docker/dockerfile:1
# Inkless in a container: a release build of the `inkless` binary, run as a non-root user
# with its data (SQLite metadata and, with the default file:// object store, the objects)
# in the /data volume.
#
#   docker build -t inkless .
#   docker run -p 9092:9092 -v inkless-data:/data inkless
#
# Metadata answers give clients the advertised address; set it to what clients can reach:
#   docker run -p 9092:9092 -e INKLESS__KAFKA__ADVERTISED=myhost:9092 -v inkless-data:/data inkless
# Every key of docs/configuration.md can be set the same way (INKLESS__SECTION__KEY), or
# mount a file and pass it: docker run ... inkless --config /etc/inkless.toml
#
# Not tested yet: the development machine has no container engine.

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
# The workspace: root manifest, lock file and every member (.dockerignore leaves out the
# test clients, the fuzz crate and build outputs).
COPY Cargo.toml Cargo.lock ./
COPY protocol protocol
COPY storage storage
COPY actors actors
COPY node node
COPY integration integration
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p inkless-node \
    && install -m 0755 target/release/inkless /usr/local/bin/inkless

FROM debian:bookworm-slim
# ca-certificates: TLS to S3 endpoints.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 inkless \
    && useradd --system --uid 10001 --gid inkless --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin inkless \
    && mkdir -p /data \
    && chown inkless:inkless /data
COPY --from=builder /usr/local/bin/inkless /usr/local/bin/inkless
ENV INKLESS__STORAGE__DATA_DIR=/data \
    INKLESS__KAFKA__LISTEN=0.0.0.0:9092
USER inkless
WORKDIR /data
EXPOSE 9092
VOLUME /data
# SIGTERM (docker stop) seals and commits in-flight produces before exiting; that can take up
# to produce.upload_timeout_ms + 5 s, so prefer `docker stop -t 30`.
ENTRYPOINT ["inkless", "serve"]
