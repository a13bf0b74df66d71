# SPDX-License-Identifier: MIT
# A thin wrapper over meson so that `make demo`, `make test` and `make bench`
# work as the first command on a fresh Debian machine. The build itself is
# meson's: see meson.build and meson_options.txt.

BUILD ?= build
MESON ?= meson
NINJA ?= ninja
# meson reads $NINJA as the path of a ninja binary: `make NINJA='ninja -j1'`
# (make exports command-line variables) made its setup fail.
unexport NINJA

.PHONY: all build setup bootstrap demo test bench format c-dirs clean

all: build

bootstrap:
	@sh scripts/bootstrap

# Configures $(BUILD) once; after that ninja re-runs meson by itself when a
# meson.build changes. A directory left half-made by a failed setup is wiped.
# The tests and the RabbitMQ connector are forced on: after bootstrap a
# missing Criterion or rabbitmq-c is an error here, not the quiet skip of a
# plain `meson setup` (see meson_options.txt).
SETUP_OPTS = -Dtests=enabled -Damqp=enabled
setup: bootstrap
	@if [ ! -f $(BUILD)/build.ninja ]; then \
		if [ -f $(BUILD)/meson-private/coredata.dat ]; then \
			$(MESON) setup --wipe $(BUILD) $(SETUP_OPTS); \
		else \
			$(MESON) setup $(BUILD) $(SETUP_OPTS); \
		fi; \
	fi

build: setup
	$(NINJA) -C $(BUILD)

# The examples, each with its default input (see their opening comments);
# bus_audit's JSON counters are cut to the last lines.
EXAMPLES = $(if $(filter /%,$(BUILD)),,./)$(BUILD)/examples
demo: build
	$(EXAMPLES)/demo
	$(EXAMPLES)/wordcount
	@# Its summary and verdict; the counters' JSON stays in the file. A
	@# pipe into head would hide its exit status.
	$(EXAMPLES)/bus_audit 500 > $(BUILD)/bus_audit.out; status=$$?; \
		head -n 4 $(BUILD)/bus_audit.out; tail -n 1 $(BUILD)/bus_audit.out; \
		exit $$status
	$(EXAMPLES)/kitchen 100

# A tree configured otherwise (by hand, or before tests was a feature) gets
# the tests forced on here, so that none is skipped quietly.
test: build
	@grep -q '"name": "tests", "value": "enabled"' \
		$(BUILD)/meson-info/intro-buildoptions.json || \
		{ $(MESON) configure $(BUILD) $(SETUP_OPTS) && \
		  $(NINJA) -C $(BUILD); }
	$(MESON) test -C $(BUILD) --print-errorlogs

bench: build
	./bench/run

# Every directory that holds C sources, of those that exist: the format
# target and CI's format check (.ci/run, through c-dirs) both use this list.
C_DIRS = $(wildcard .ci include stage pipelines connectors tests bench examples)

# Formats every C file in place with the tree's .clang-format (CI checks it).
format:
	find $(C_DIRS) -name '*.[ch]' -type f -exec clang-format -i {} +

c-dirs:
	@echo $(C_DIRS)

clean:
	rm -rf $(BUILD) build build-tsan build-asan build-valgrind
