FROM convoy-test/busybox:1 AS builder
ARG GREETING=unset
RUN mkdir -p /out && echo "$GREETING" > /out/greeting && touch /out/builder-only

FROM convoy-test/busybox:1 AS final
COPY --from=builder /out/greeting /srv/greeting
