# Build a static binary, then ship it alone in a distroless image that runs
# as an unprivileged user.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/courier .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/courier /courier
USER nonroot:nonroot
EXPOSE 9001
ENTRYPOINT ["/courier"]
