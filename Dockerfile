# One image for the four services; compose picks the binary with `command`.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir /out && cp target/release/gateway target/release/uploader \
    target/release/fflow target/release/holder /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/vod --create-home vod
COPY --from=build /out/ /usr/local/bin/
USER vod
WORKDIR /var/lib/vod
ENV RUST_LOG=info LOG_FORMAT=json
