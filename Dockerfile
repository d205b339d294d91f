# Build a static binary, then ship it alone in a distroless image that runs
# as an unprivileged user.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/courier .
# SPOOL_DIR's mount point, owned by the user courier runs as: a named volume
# mounted there starts with this ownership.
RUN mkdir -p /out/spool

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/courier /courier
COPY --from=build --chown=65532:65532 /out/spool /var/lib/courier/spool
USER nonroot:nonroot
EXPOSE 9001
ENTRYPOINT ["/courier"]
