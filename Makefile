# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := dnsmasq-base fail2ban nftables
BENCH_PACKAGES := wrk

.PHONY: demo test venv debian bench-debian bench clean

include infra/infra.mk

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The Debian packages that tests drive for real (a DNS resolver, fail2ban, nft); wrk for the benchmarks.
debian bench-debian: PACKAGES = $(if $(filter bench-debian,$@),$(BENCH_PACKAGES),$(DEBIAN_PACKAGES))
debian bench-debian:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

demo: $(STAMP)
	$(BIN)/netimmune demo

# dynalite: a DynamoDB-compatible server on loopback for the store contract tests
DYNALITE := tests/contract/dynalite/node_modules/.package-lock.json
$(DYNALITE): tests/contract/dynalite/package.json tests/contract/dynalite/package-lock.json
	cd tests/contract/dynalite && npm ci --no-audit --no-fund --no-update-notifier

test: $(STAMP) debian $(DYNALITE)
	$(BIN)/pytest -q

bench: $(STAMP) bench-debian
	$(BIN)/python bench/refer.py
	$(BIN)/python bench/http_refer.py
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
