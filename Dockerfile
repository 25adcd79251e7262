# The guard controller image: `guard serve` for the Helm chart, and the
# `guard` CLI. It has not been built in this repository's test environment
# (no container runtime there): build and scan it in your pipeline, and pin
# the base image by digest (docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/guard
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN /opt/guard/bin/pip install .

# Same base as the build stage: the virtualenv links to its interpreter.
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/guard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/guard /opt/guard
# The default bundle, for the CLI; the chart mounts its own at /etc/guard/policies.
COPY policies /usr/share/guard/policies
# Numeric, so Kubernetes can check runAsNonRoot; matches the chart's runAsUser.
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["guard"]
CMD ["--help"]
