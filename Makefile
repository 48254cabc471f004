# The main commands of this project (see README.md):
#   make bench       the main job: builds the loop and runs a quick, representative set of the
#                    side-by-side benchmarks (headline micro-benchmarks, 1 KiB and 100 KiB echo,
#                    HTTP keep-alive and a new connection per request; about 7 minutes), writing
#                    bench/results/<date>.md and a chart per benchmark family (see bench/README.md)
#   make bench-full  the same for the whole suite (micro, echo, HTTP, memory; 35-40 minutes)
#   make test        every test: cargo test, builds for CPython 3.14/3.15 (free-threaded too), then
#                    pytest on each CPython 3.9-3.13 found
#
# They set up what they need: libclang (for libuv-sys2's bindgen), per-Python virtualenvs
# with maturin and pytest, and a release build of the extension for each Python.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.ONESHELL:

# Every CPython 3.9-3.13 pyenv has, else the python3 on PATH.
PYTHONS ?= $(or $(wildcard $(foreach v,9 10 11 12 13,$(HOME)/.pyenv/versions/3.$(v).*/bin/python3.$(v))),$(shell command -v python3))
# The interpreter for cargo test and the benchmarks.
MAIN_PYTHON ?= $(or $(wildcard $(HOME)/.pyenv/versions/3.11.*/bin/python3.11),$(lastword $(PYTHONS)))
VENVS := .venvs

.PHONY: test packaging-check bench bench-full soak fuzz memcheck cargo-test portability-check future-python-builds pytest-all libclang

test: cargo-test portability-check future-python-builds pytest-all packaging-check

# Both run bench/bench.py: the harnesses in sequence (the first builds ours), then bench/report.py.
bench: libclang
	@$(MAIN_PYTHON) bench/bench.py --preset quick

bench-full: libclang
	@$(MAIN_PYTHON) bench/bench.py --preset full

# Not part of `make test`: a server on our loop under steady load for SOAK_MINUTES (loopback),
# failing if memory, descriptors, libuv handles or Python objects grow (see soak/soak.py).
SOAK_MINUTES ?= 10
soak: libclang
	@venv=$(VENVS)/soak
	[ -x $$venv/bin/python ] || $(MAIN_PYTHON) -m venv $$venv
	$$venv/bin/python -m pip install -q --disable-pip-version-check maturin matplotlib
	rm -rf target/wheels/soak
	CARGO_TARGET_DIR=target/soak $$venv/bin/maturin build --release -q -i $$venv/bin/python -o target/wheels/soak
	$$venv/bin/python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps target/wheels/soak/*.whl
	$$venv/bin/python soak/soak.py --minutes $(SOAK_MINUTES)

# Not part of `make test` (which runs a short search): the property-based differential tests
# with a long search, on MAIN_PYTHON's test virtualenv (made by `make test`).
fuzz:
	@tag=$$($(MAIN_PYTHON) -c 'import sys; print("py%d.%d" % sys.version_info[:2])')
	[ -x $(VENVS)/$$tag/bin/python ] || $(MAKE) pytest-all PYTHONS=$(MAIN_PYTHON)
	HYPOTHESIS_PROFILE=long $(VENVS)/$$tag/bin/python -m pytest -q -p no:cacheprovider \
	  --timeout 3600 tests/test_fuzz_api.py

# Not part of `make test`: the Rust tests and a slice of the Python suite under valgrind's
# memcheck (see memcheck/run.py), on MAIN_PYTHON's test virtualenv (made by `make test`).
memcheck: libclang
	@command -v valgrind >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -qq valgrind; }
	tag=$$($(MAIN_PYTHON) -c 'import sys; print("py%d.%d" % sys.version_info[:2])')
	[ -x $(VENVS)/$$tag/bin/python ] || $(MAKE) pytest-all PYTHONS=$(MAIN_PYTHON)
	$(MAIN_PYTHON) memcheck/run.py --python $(VENVS)/$$tag/bin/python

libclang:
	@# libclang itself (libclang.so*, libclang-17.so*), not libclang-cpp, which bindgen cannot use.
	@# (ls fails when any pattern matches nothing: what it lists is what counts.)
	if ! { ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
	    /usr/lib/*-linux-gnu/libclang.so* /usr/lib/*-linux-gnu/libclang-[0-9]*.so* 2>/dev/null || true; } | grep -q .; then
	  echo "libclang missing: installing libclang-dev (needed by libuv-sys2's bindgen)"
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo )
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libclang-dev
	fi

cargo-test: libclang
	@libdir=$$($(MAIN_PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
	PYO3_PYTHON=$(MAIN_PYTHON) LD_LIBRARY_PATH=$$libdir cargo test

# The OS-specific modules (fd watchers' poller, clock, socket calls) type-checked for macOS and
# FreeBSD, which these Linux machines cannot build the whole extension for.
PORTABILITY_TARGETS := x86_64-apple-darwin aarch64-apple-darwin x86_64-unknown-freebsd
portability-check:
	@rustup target add $(PORTABILITY_TARGETS) >/dev/null
	for target in $(PORTABILITY_TARGETS); do
	  echo "=== cargo check --target $$target (portability)"
	  cargo clippy -q -p uvloop-portability-check --target $$target -- -D warnings
	done

# CPython 3.14, 3.15 and their free-threaded builds cannot be installed on these machines: the
# extension is compiled (and linked) for each through a PyO3 build-config file, so that an API
# those versions dropped fails the build here. See pyo3-configs/ and the README's "Supported".
FUTURE_PYTHONS := 3.14 3.14t 3.15 3.15t
future-python-builds: libclang
	@for version in $(FUTURE_PYTHONS); do
	  echo "=== cargo build for CPython $$version (PyO3 build config, no interpreter)"
	  PYO3_CONFIG_FILE=$(CURDIR)/pyo3-configs/cpython-$$version.txt CARGO_TARGET_DIR=target/cpython-$$version \
	    cargo rustc -q --lib -- -D warnings
	done

# One virtualenv and one fresh release build per Python; each build has its own target dir
# so that switching interpreters does not rebuild everything.
pytest-all: libclang
	@failed=""
	for py in $(PYTHONS); do
	  tag=$$($$py -c 'import sys; print("py%d.%d" % sys.version_info[:2])')
	  echo "=== $$tag: $$py"
	  venv=$(VENVS)/$$tag
	  [ -x $$venv/bin/python ] || $$py -m venv $$venv
	  $$venv/bin/python -m pip install -q --disable-pip-version-check maturin pytest pytest-timeout hypothesis mypy uvicorn websockets gunicorn aiohttp tornado anyio httpx
	  rm -rf target/wheels/$$tag
	  CARGO_TARGET_DIR=target/$$tag $$venv/bin/maturin build --release -q -i $$venv/bin/python -o target/wheels/$$tag
	  $$venv/bin/python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps target/wheels/$$tag/*.whl
	  $$venv/bin/python -m pytest -q -p no:cacheprovider || failed="$$failed $$tag"
	done
	if [ -n "$$failed" ]; then echo "pytest failed on:$$failed"; exit 1; fi

# The package as a user gets it (after pytest-all, which made MAIN_PYTHON's virtualenv and wheel):
# the sdist installed with pip alone into a fresh virtualenv and run from outside the checkout
# (tests/packaging/smoke.py), and that wheel checked by auditwheel as a manylinux wheel.
packaging-check: libclang
	@tag=$$($(MAIN_PYTHON) -c 'import sys; print("py%d.%d" % sys.version_info[:2])')
	echo "=== packaging: sdist into a fresh virtualenv, auditwheel on the $$tag wheel"
	rm -rf target/sdist-check $(VENVS)/sdist-check
	$(VENVS)/$$tag/bin/maturin sdist -o target/sdist-check 2>&1 | tail -1
	$(MAIN_PYTHON) -m venv $(VENVS)/sdist-check
	$(VENVS)/sdist-check/bin/python -m pip install -q --disable-pip-version-check target/sdist-check/uvloop-*.tar.gz
	smoke=$(CURDIR)/tests/packaging/smoke.py
	(cd "$$(mktemp -d)" && $(CURDIR)/$(VENVS)/sdist-check/bin/python -I $$smoke)
	$(VENVS)/$$tag/bin/python -m pip install -q --disable-pip-version-check auditwheel
	for wheel in target/wheels/$$tag/*.whl; do
	  $(VENVS)/$$tag/bin/auditwheel show $$wheel | tee target/auditwheel.txt
	  tr -s ' \n' ' ' < target/auditwheel.txt | grep -q 'is consistent with the following platform tag: "manylinux_'
	done
