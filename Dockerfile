# syntax=docker/dockerfile:1
# Multi-stage build: compile every binary once, ship them in a small
# non-root runtime image. The same image runs every service; the compose
# file and the Kubernetes manifests pick the binary with `command`.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so a code change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY common/Cargo.toml common/Cargo.toml
COPY migrations/Cargo.toml migrations/Cargo.toml
COPY users/Cargo.toml users/Cargo.toml
COPY orders/Cargo.toml orders/Cargo.toml
COPY scanner/Cargo.toml scanner/Cargo.toml
COPY gateway/Cargo.toml gateway/Cargo.toml
COPY testkit/Cargo.toml testkit/Cargo.toml
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked \
        -p gateway -p users -p orders -p scanner -p migrations \
 && mkdir -p /out \
 && cp target/dist/gateway target/dist/users target/dist/orders \
       target/dist/scanner target/dist/migrations /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin gatehouse \
 && mkdir -p /data && chown gatehouse /data
COPY --from=build /out/ /usr/local/bin/
USER 10001
WORKDIR /data
ENV DATA_DIR=/data LOG_FORMAT=json RUST_LOG=info
# Every service listens on 8080 in a container (set per service below).
EXPOSE 8080
CMD ["gateway"]
