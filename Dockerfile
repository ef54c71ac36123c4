# syntax=docker/dockerfile:1
# Multi-stage: a full Rust toolchain builds the binary; a small Debian runtime runs it as a
# non-root user. Everything the service reads at run time (cards, samples) is copied in.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY schemas ./schemas
COPY static ./static
RUN cargo build --release --locked && strip target/release/leg-cramp-cds

FROM debian:bookworm-slim
# ca-certificates: the FHIR client verifies HTTPS servers against the OS trust store.
# curl: the HEALTHCHECK and the HAPI seed script. Not version-pinned: bookworm's security
# updates should flow in on rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin cds
WORKDIR /app
COPY --from=build /src/target/release/leg-cramp-cds /usr/local/bin/leg-cramp-cds
COPY cards ./cards
COPY samples ./samples
COPY docker/seed-hapi.sh ./docker/seed-hapi.sh
RUN mkdir -p /app/data && chown cds /app/data
USER 10001
ENV LEG_CRAMP_CDS_LISTEN=0.0.0.0:8080 \
    LEG_CRAMP_CDS_CARDS=/app/cards \
    LEG_CRAMP_CDS_SAMPLES=/app/samples \
    LEG_CRAMP_CDS_DATABASE=/app/data/leg-cramp-cds.sqlite \
    LEG_CRAMP_CDS_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
    CMD ["curl", "-fsS", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["leg-cramp-cds"]
CMD ["serve"]
