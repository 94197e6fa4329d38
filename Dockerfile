# The operator image for machines with a container daemon (`docker build -t kollect:0.1.0 .`).
# Where there is none, hack/build-image.sh builds the same filesystem with umoci.
#
# Build stage: the release binary plus the shared libraries it links (glibc, libgcc, OpenSSL
# and zlib for libgit2), copied at their paths. The runtime stage adds them to distroless
# "static" (CA certificates, /etc/passwd with the nonroot user, no shell) and nothing else.
FROM rust:1-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq cmake pkg-config libssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p kollect-operator --bin kollect \
    && install -D -m 0755 target/release/kollect /out/usr/local/bin/kollect \
    && strip /out/usr/local/bin/kollect \
    && for library in $(ldd target/release/kollect | grep -o '/[^ ]*' | sort -u); do \
           install -D "$(readlink -f "$library")" "/out$library"; \
       done

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kollect"]
CMD ["run"]
