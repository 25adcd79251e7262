# The guard controller image, for those who build with Docker: `guard serve`
# for the Helm chart, and the `guard` CLI. `make image` builds the same image
# without a daemon (packaging/build-image.sh: Debian bookworm's Python 3.11,
# a virtualenv with the hash-locked dependencies, no pip, no apt lists) and a
# test compares the two: user, entry point, ports, environment, labels and
# Python's minor version. Pin the base by digest in your pipeline:
#   docker build --build-arg DEBIAN_IMAGE=debian:bookworm-slim@sha256:... \
#     --build-arg REVISION=$(git rev-parse HEAD) -t ghcr.io/guard-dev/guard:0.1.0 .
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/build && python3 -m venv --without-pip /opt/guard
WORKDIR /src
COPY packaging/requirements.lock packaging/
RUN /opt/build/bin/pip install --python /opt/guard/bin/python --require-hashes \
    -r packaging/requirements.lock
# controller/policy/bundle links to policies/: both are copied.
COPY pyproject.toml README.md ./
COPY policies ./policies
COPY controller ./controller
RUN /opt/build/bin/pip install --python /opt/guard/bin/python --no-deps . \
    && rm -rf /opt/guard/lib/python3.11/site-packages/cel_expr_python/ext

# Same base as the build stage: the virtualenv links to its interpreter.
FROM ${DEBIAN_IMAGE}
ARG REVISION=unknown
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/guard-dev/guard
# libstdc++6: the CEL library (cel-cpp) is C++; its unused extensions are
# left out of the virtualenv above, as in `make image`.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 libstdc++6 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && echo "guard:x:65532:65532:guard:/nonexistent:/usr/sbin/nologin" >>/etc/passwd \
    && echo "guard:x:65532:" >>/etc/group
COPY --from=build /opt/guard /opt/guard
ENV PATH=/opt/guard/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
LABEL org.opencontainers.image.title="guard" \
      org.opencontainers.image.description="Separation-of-duties admission webhook and CLI" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="debian:bookworm"
# Numeric, so Kubernetes can check runAsNonRoot; matches the chart's runAsUser.
USER 65532:65532
WORKDIR /
EXPOSE 8443/tcp 9090/tcp
# The default policy bundle is inside the package; the chart mounts its own.
ENTRYPOINT ["/opt/guard/bin/guard"]
CMD ["--help"]
