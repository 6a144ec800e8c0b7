# syntax=docker/dockerfile:1
# otp-gateway container image: a release build on Debian bookworm, run on distroless (glibc,
# libgcc_s, CA certificates, no shell, uid 65532). The runtime needs only the binary, a
# configuration file under /etc/otp-gateway/ and, optionally, files it is pointed at
# (auth.signing_key_file, smpp.ca_file); tests/packaging.rs checks that list on the binary.
#
#   docker build -t otp-gateway:0.1.0 .
#   docker run --read-only -p 8080:8080 -v "$PWD/gateway.toml:/etc/otp-gateway/gateway.toml:ro" otp-gateway:0.1.0

# Same major as the toolchain the project is checked with; Cargo.lock is honoured (--locked).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and target/ between builds (BuildKit); the binary is
# copied out in the same step because target/ is not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin otp-gateway \
    && install -D -m 0755 target/release/otp-gateway /out/otp-gateway

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="otp-gateway" \
      org.opencontainers.image.description="CAMARA One Time Password SMS v1.1 gateway delivering codes over SMPP" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/otp-gateway /usr/local/bin/otp-gateway
# Listeners must bind beyond loopback in a container; the file mounted here replaces this
# default entirely (Helm mounts a ConfigMap on the directory).
COPY --chown=0:0 docker/gateway.toml /etc/otp-gateway/gateway.toml
# Nothing is written at run time: the root filesystem can be read-only (no HOME, no cache,
# no temporary files; logs go to stdout/stderr).
USER 65532:65532
WORKDIR /
# 8080: the API (http.listen); 9091: metrics, health, /admin, /sandbox (admin.listen).
EXPOSE 8080 9091
ENTRYPOINT ["otp-gateway"]
CMD ["serve", "--config", "/etc/otp-gateway/gateway.toml"]
