# marketmesh/meshsetup: the one-shot container of docker-compose.yml that
# locks Consul down (plugins/cmd/meshsetup): a static binary on an empty
# base, staged by `make docker` like the services'. It listens on nothing
# and runs once, so it has no health check.
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="marketmesh-meshsetup" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/marketmesh/marketmesh"
COPY build/docker/passwd /etc/passwd
COPY bin/docker/meshsetup /usr/local/bin/meshsetup
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/meshsetup"]
