# The two commands of this project (see README.md):
#   make bench   the main job: builds the loop and runs the side-by-side benchmarks
#                (event-loop micro-benchmarks, echo servers, HTTP servers; about 30 minutes)
#   make test    every test: cargo test, then pytest on each CPython 3.9-3.13 found
#
# Both set up what they need: libclang (for libuv-sys2's bindgen), per-Python virtualenvs
# with maturin and pytest, and a release build of the extension for each Python.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.ONESHELL:

# Every CPython 3.9-3.13 pyenv has, else the python3 on PATH.
PYTHONS ?= $(or $(wildcard $(foreach v,9 10 11 12 13,$(HOME)/.pyenv/versions/3.$(v).*/bin/python3.$(v))),$(shell command -v python3))
# The interpreter for cargo test and the benchmarks.
MAIN_PYTHON ?= $(or $(wildcard $(HOME)/.pyenv/versions/3.11.*/bin/python3.11),$(lastword $(PYTHONS)))
VENVS := .venvs

.PHONY: test bench cargo-test portability-check pytest-all libclang

test: cargo-test portability-check pytest-all

bench: libclang
	@$(MAIN_PYTHON) bench/run.py
	$(MAIN_PYTHON) bench/echo/run.py --no-build
	$(MAIN_PYTHON) bench/echo/run.py --no-build --sizes 102400 --warm-heap
	$(MAIN_PYTHON) bench/http/run.py --no-build

libclang:
	@# libclang itself (libclang.so*, libclang-17.so*), not libclang-cpp, which bindgen cannot use.
	if ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
	    /usr/lib/*-linux-gnu/libclang.so* /usr/lib/*-linux-gnu/libclang-[0-9]*.so* >/dev/null 2>&1; then
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

# One virtualenv and one fresh release build per Python; each build has its own target dir
# so that switching interpreters does not rebuild everything.
pytest-all: libclang
	@failed=""
	for py in $(PYTHONS); do
	  tag=$$($$py -c 'import sys; print("py%d.%d" % sys.version_info[:2])')
	  echo "=== $$tag: $$py"
	  venv=$(VENVS)/$$tag
	  [ -x $$venv/bin/python ] || $$py -m venv $$venv
	  $$venv/bin/python -m pip install -q --disable-pip-version-check maturin pytest pytest-timeout
	  rm -rf target/wheels/$$tag
	  CARGO_TARGET_DIR=target/$$tag $$venv/bin/maturin build --release -q -i $$venv/bin/python -o target/wheels/$$tag
	  $$venv/bin/python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps target/wheels/$$tag/*.whl
	  $$venv/bin/python -m pytest -q -p no:cacheprovider || failed="$$failed $$tag"
	done
	if [ -n "$$failed" ]; then echo "pytest failed on:$$failed"; exit 1; fi
