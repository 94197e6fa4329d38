# The operator image for machines with a container daemon (`docker build -t kollect:0.1.0 .`).
# Where there is none, hack/build-image.sh builds the same layout with umoci.
#
# Build stage: the release binary. The runtime stage holds only it, the shared libraries it
# links (glibc, libgcc, OpenSSL for libgit2), CA certificates and a non-root user.
FROM rust:1-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq cmake pkg-config libssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p kollect-operator --bin kollect \
    && install -D target/release/kollect /out/usr/local/bin/kollect

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kollect"]
CMD ["run"]
