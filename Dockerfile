# The bare placeholder image: one static binary and the pages it serves. Nothing to pull.
# `cargo xtask image` and `publish` build the full one in-process: the same files plus the
# binary's other names (/bin/sh, curl, wget, node, ...) as hard links and /etc/passwd, which a
# COPY could only make by copying the binary once per name.
# Build the binary first:  cargo build --release -p server --target x86_64-unknown-linux-musl
# then:                    docker build -t placeholder .
# For arm64, add --platform linux/arm64 --build-arg SERVER_BINARY=target/aarch64-unknown-linux-musl/release/server
FROM scratch
# A COPY must come first: on the classic builder a metadata step (ARG) straight after
# `FROM scratch` is stamped with the host's platform, and `--platform linux/arm64` then fails.
COPY public_html /public_html
ARG SERVER_BINARY=target/x86_64-unknown-linux-musl/release/server
COPY ${SERVER_BINARY} /server
EXPOSE 80
# ECS ignores this and runs the task definition's check; Docker (and our smoke test) use it.
# Exec form: a scratch image has no shell.
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["/server", "--probe"]
ENTRYPOINT ["/server"]
