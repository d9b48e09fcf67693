# One-command set-up: `make run` starts the server, `make test` runs the tests (fresh machine OK).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUILT := $(VENV)/.built
ARGS ?=

.PHONY: run test unit lint typecheck build bench clean node browser deploy-tools

$(STAMP): pyproject.toml setup.py client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# setup.py build_ext (below) runs the venv's own setuptools: the SPDX license needs >= 77
	$(PY) -m pip install -q --upgrade pip 'setuptools>=77'
	# the client package (client/, distribution faktory-fast-client) is tested here too
	$(PY) -m pip install -q -e '.[test]' -e ./client
	touch $(STAMP)

# The compiled modules (faktory_fast.COMPILED: the .pyx codecs and the hot path's .py, typed by
# the .pxd files in ext/), rebuilt after an edit; a module whose sources changed since is not
# imported anyway (faktory_fast/__init__.py).
$(BUILT): $(STAMP) $(shell find ext faktory_fast -name '*.py' -o -name '*.pyx' -o -name '*.pxd')
	$(PY) setup.py -q build_ext --inplace
	touch $(BUILT)

build: $(BUILT)

run: $(BUILT)
	$(VENV)/bin/faktory-fast $(ARGS)

tests/node/node_modules: tests/node/package.json
	cd tests/node && npm install --no-audit --no-fund --silent
	touch tests/node/node_modules

node: tests/node/node_modules

# Headless Chromium for the web UI's browser tests, from Debian's packages (Playwright drives it).
browser:
	@[ -x /usr/bin/chromium ] || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; }

# haproxy, stunnel and openssl for the deployment tests (tests/integration/test_deploy.py), from Debian's
# packages, when missing. Not fatal: where they cannot be installed those tests skip and say why.
deploy-tools:
	@[ -x /usr/sbin/haproxy ] && [ -x /usr/bin/stunnel4 ] && [ -x /usr/bin/openssl ] || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    haproxy stunnel4 openssl; } || echo "make: haproxy/stunnel4/openssl not installed:" \
	    "tests/integration/test_deploy.py will skip what needs them" >&2; }

# The tools a test file needs beyond the build (file:target). `make test` sets up those the
# selected tests need (pytest collects them first): all for the full suite, none for
# `make test ARGS=tests/unit`.
TOOLS := integration/test_compat_node.py:node browser/test_web_browser.py:browser \
	integration/test_deploy.py:deploy-tools integration/test_client_compat.py:node \
	integration/test_client.py:deploy-tools

test: $(BUILT)
	@selected="$$($(PY) -m pytest --collect-only -qq $(ARGS) 2>/dev/null)"; \
	for tool in $(TOOLS); do \
	  case "$$selected" in *"tests/$${tool%%:*}: "*) \
	    $(MAKE) --no-print-directory $${tool#*:} || exit 1;; esac; \
	done
	$(PY) -m pytest $(ARGS)

# The fast tier (tests/unit: no server process; seconds).
unit: $(BUILT)
	$(PY) -m pytest tests/unit $(ARGS)

# Configured in pyproject.toml ([tool.ruff], [tool.mypy]).
lint: $(STAMP)
	$(VENV)/bin/ruff check $(ARGS)
	$(VENV)/bin/lint-imports  # the layers contract in pyproject.toml

typecheck: $(STAMP)
	$(VENV)/bin/mypy $(ARGS)

bench: $(BUILT)
	$(PY) -m bench $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info faktory_fast/_compiled.json tests/node/node_modules
	find faktory_fast ext \( -name '*.so' -o -name '*.c' \) -delete
