# Sallyport container image: a static binary on a minimal base, run as a
# non-root user, with its state in the /data volume.
#
#   docker build -t sallyport .
#   docker run --rm -v sallyport-data:/data sallyport ca init --data /data

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/sallyport ./cmd/sallyport \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sallyport /usr/local/bin/sallyport
# The data folder holds the CA keys (mode 0600) and the database; it must be
# owned by the nonroot user (uid 65532) that runs Sallyport.
COPY --from=build --chown=65532:65532 --chmod=0700 /out/data /data
VOLUME ["/data"]
USER 65532:65532
EXPOSE 8080 2222
ENTRYPOINT ["/usr/local/bin/sallyport"]
CMD ["--help"]
