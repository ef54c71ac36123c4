# Multi-stage build: a full Rust toolchain to build, a small Debian runtime to run.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY schemas ./schemas
RUN cargo build --release --locked && strip target/release/leg-cramp-cds

FROM debian:bookworm-slim
# ca-certificates: the FHIR client verifies HTTPS servers against the OS trust store.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /app cds
WORKDIR /app
COPY --from=build /src/target/release/leg-cramp-cds /usr/local/bin/leg-cramp-cds
COPY cards ./cards
USER cds
EXPOSE 8080
ENV LEG_CRAMP_CDS_LISTEN=0.0.0.0:8080 LEG_CRAMP_CDS_CARDS=/app/cards
HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["leg-cramp-cds"]
CMD ["serve"]
