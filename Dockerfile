# Multi-stage build of the static relay binary (pure-Go SQLite, CGO_ENABLED=0).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/relay ./cmd/relay \
 && mkdir -p /out/data

# Distroless static: CA certificates for HTTPS upstreams, no shell, runs as non-root (uid 65532).
FROM gcr.io/distroless/static-debian12:nonroot
WORKDIR /app
COPY --from=build /out/relay /app/relay
COPY config.yaml /app/config.yaml
COPY --from=build --chown=65532:65532 /out/data /app/data
USER 65532:65532
ENV RELAY_LISTEN=0.0.0.0:8080 \
    RELAY_STORE_PATH=/app/data/relay.db
VOLUME ["/app/data"]
EXPOSE 8080
ENTRYPOINT ["/app/relay", "-config", "/app/config.yaml"]
CMD ["serve"]
