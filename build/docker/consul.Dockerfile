# A local stand-in for the public hashicorp/consul image, for machines with
# no registry access: the consul binary that scripts/consul.sh builds from
# Consul's Go module, on an empty base. Anywhere else, `docker pull
# hashicorp/consul:1.22.0` gives the real one; docker-compose.yml uses either.
FROM scratch
# Build context: bin/consul-image/ (staged by `make consul-image`).
COPY consul /bin/consul
COPY passwd /etc/passwd
ENV PATH=/bin
EXPOSE 8500 8600/udp
ENTRYPOINT ["/bin/consul"]
CMD ["agent", "-dev", "-client", "0.0.0.0"]
