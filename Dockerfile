# Multi-stage build: compile warren in the Rust image, ship only the static-ish binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin warren

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/warren warren \
    && mkdir -p /var/lib/warren && chown warren /var/lib/warren
COPY --from=build /src/target/release/warren /usr/local/bin/warren
USER warren
VOLUME /var/lib/warren
EXPOSE 5672 15672
ENTRYPOINT ["/usr/local/bin/warren", "--data-dir", "/var/lib/warren"]
