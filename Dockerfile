# Berth's host as a container image: `docker build -t berth .`
# The build stage compiles the release binary; the final stage is Debian
# slim with the binary, CA certificates and an unprivileged user. Run it
# with a read-only root filesystem and /data as a volume (see
# deploy/kubernetes/deployment.yaml).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
COPY api api
COPY runtime runtime
COPY control control
COPY admin admin
COPY host host
COPY guest-sdk guest-sdk
COPY tests tests
COPY wit wit
RUN cargo build --release --locked -p berth \
    && install -m 0755 target/release/berth /berth

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 berth \
    && useradd --system --uid 10001 --gid berth --home-dir /data --shell /usr/sbin/nologin berth \
    && mkdir /data && chown berth:berth /data
COPY --from=build /berth /usr/local/bin/berth
USER 10001:10001
VOLUME /data
ENV BERTH_DATA_DIR=/data
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/berth"]
CMD ["serve", "--listen=0.0.0.0:8080", "--admin-listen=0.0.0.0:8081"]
