# Makefile: build/mgrok, its static library, unit tests, fuzz harnesses.
#   make            build build/mgrok
#   make test       install missing Debian packages, build, run every test
#   make asan       the same suite built with -fsanitize=address,undefined
#   make demo       a server, a client and a demo service on loopback
#   make install    bin/mgrok and share/man/man1/mgrok.1 under
#                   $(DESTDIR)$(PREFIX) (PREFIX=/usr/local)
BUILD ?= build
PREFIX ?= /usr/local
DESTDIR ?=
OPT ?= -O2
SAN ?=
PKGS = libevent libevent_openssl openssl zlib nettle yaml-0.1 jansson hiredis
PYTEST ?= /usr/bin/python3 -m pytest
# the e2e tests mostly wait on sockets and timers: two at a time (Debian's
# python3-pytest-xdist; each worker picks ports from its own share, see
# tests/e2e/helpers.py) halve the run on two cores. E2E_JOBS= runs one.
E2E_JOBS ?= $(shell /usr/bin/python3 -c 'import xdist' 2>/dev/null && echo "-n 2")

WARN = -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes \
	-Wmissing-prototypes -Wno-unused-parameter
ALL_CFLAGS = $(OPT) -g -std=gnu11 $(WARN) -D_GNU_SOURCE -Isrc \
	$(shell pkg-config --cflags $(PKGS)) $(SAN) $(CFLAGS)
# Debian's static libraries of the dependencies are linked by default: a
# shared libcrypto alone costs every process about 1.5 MiB of RSS in
# relocated pages, which static linking (only the objects used) avoids.
# STATIC_DEPS=0 links them as shared libraries (for distribution packages,
# which take security fixes through shared libraries).
STATIC_DEPS ?= 1
# libyaml (the config files) is linked statically like the others when
# its static library is installed (Debian's libyaml-dev has it); so is
# hiredis (the cluster store; libhiredis-dev has libhiredis.a)
YAML_STATIC := $(if $(filter /%,$(shell $(CC) -print-file-name=libyaml.a)),1,0)
HIREDIS_STATIC := $(if $(filter /%,$(shell $(CC) -print-file-name=libhiredis.a)),1,0)
ifeq ($(STATIC_DEPS),1)
DEP_LIBS = -Wl,-Bstatic $(if $(filter 1,$(HIREDIS_STATIC)),-lhiredis) \
	-levent_openssl -levent -lhttp_parser -lnettle -ljansson \
	$(if $(filter 1,$(YAML_STATIC)),-lyaml) -lssl -lcrypto -lz \
	-Wl,-Bdynamic $(if $(filter 1,$(YAML_STATIC)),,-lyaml) \
	$(if $(filter 1,$(HIREDIS_STATIC)),,-lhiredis) -ldl -lpthread
else
DEP_LIBS = $(shell pkg-config --libs $(PKGS)) -lhttp_parser
endif
ALL_LDLIBS = $(DEP_LIBS) -lm $(SAN) $(LDFLAGS)

LIB_SRC = $(sort $(filter-out src/cli/%,$(wildcard src/*/*.c)))
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/webassets.o
CLI_SRC = $(sort $(wildcard src/cli/*.c))
CLI_OBJ = $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC = $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all lint unit-bins unit e2e test check asan asan-check deps demo fuzz \
	fuzz-replay bench clean format install man

all: $(BUILD)/mgrok

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

# the static pages (src/web/assets/SET/PATH) become a C table in the library
# (src/web/webassets.h); tools/embed is a host tool, built without $(SAN).
# The directories are prerequisites too, so that removing a file rebuilds.
HOSTCC ?= cc
ASSETS = $(sort $(shell find src/web/assets -type f))
ASSET_DIRS = $(sort $(shell find src/web/assets -type d))

$(BUILD)/tools/embed: tools/embed.c
	@mkdir -p $(dir $@)
	$(HOSTCC) -O2 -std=gnu11 -Wall -Wextra -D_GNU_SOURCE -o $@ $<

$(BUILD)/gen/webassets.c: $(BUILD)/tools/embed $(ASSETS) $(ASSET_DIRS)
	@mkdir -p $(dir $@)
	$(BUILD)/tools/embed $@ src/web/assets $(ASSETS)

$(BUILD)/gen/webassets.o: $(BUILD)/gen/webassets.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libmgrok.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/mgrok: $(CLI_OBJ) $(BUILD)/libmgrok.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(ALL_LDLIBS)

# the man page comes from the option table, like --help
# (and from the option table's files: `make -o build/mgrok install`, as the
# install test does, must not keep a page of older options)
$(BUILD)/mgrok.1: $(BUILD)/mgrok src/conf/opts.c src/conf/doc.c
	$(BUILD)/mgrok man > $@.tmp && mv $@.tmp $@

man: $(BUILD)/mgrok.1

install: $(BUILD)/mgrok $(BUILD)/mgrok.1
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(BUILD)/mgrok $(DESTDIR)$(PREFIX)/bin/mgrok
	install -m 644 $(BUILD)/mgrok.1 $(DESTDIR)$(PREFIX)/share/man/man1/mgrok.1

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libmgrok.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libmgrok.a -lcmocka $(ALL_LDLIBS)

unit-bins: $(UNIT_BIN)

# Each unit binary prints cmocka's summary; the loop fails on the first failure.
unit: unit-bins
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# a fast UDP service for the flood test (tests/e2e/udptag.c)
$(BUILD)/udptag: tests/e2e/udptag.c
	$(CC) $(ALL_CFLAGS) -o $@ $<

# the cluster store's test driver (tests/e2e/test_rstore.py)
$(BUILD)/rstore_drive: tests/cluster/rstore_drive.c $(BUILD)/libmgrok.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libmgrok.a $(ALL_LDLIBS)

# the Go xtaci/smux peer of the interop tests (tests/interop/smuxpeer), built
# offline from Debian's golang-go and golang-github-xtaci-smux-dev: go.mod
# replaces the library by its /usr/share/gocode directory; nothing is fetched
SMUXPEER_SRC = tests/interop/smuxpeer/main.go tests/interop/smuxpeer/go.mod
$(BUILD)/smuxpeer: $(SMUXPEER_SRC)
	@mkdir -p $(BUILD)/go
	cd tests/interop/smuxpeer && GOPROXY=off GOSUMDB=off GOFLAGS=-mod=mod \
	    GO111MODULE=on GOTOOLCHAIN=local GOPATH=$(abspath $(BUILD)/go) \
	    GOCACHE=$(abspath $(BUILD)/go/cache) go build -trimpath -o $(abspath $@) .

e2e: all $(BUILD)/udptag $(BUILD)/smuxpeer $(BUILD)/rstore_drive
	MGROK_BIN=$(abspath $(BUILD)/mgrok) MGROK_UDPTAG=$(abspath $(BUILD)/udptag) \
	    MGROK_SMUXPEER=$(abspath $(BUILD)/smuxpeer) \
	    MGROK_RSTORE_DRIVE=$(abspath $(BUILD)/rstore_drive) \
	    $(PYTEST) -q -ra $(E2E_JOBS) tests/e2e $(PYTEST_ARGS)

# lint: source checks no compiler makes (tests/lint)
lint:
	python3 tests/lint/json_pack.py

# check: what CI and `make test` run once the dependencies are there.
check: all lint unit fuzz-replay e2e

test:
	scripts/deps.sh
	$(MAKE) check

asan:
	scripts/deps.sh
	$(MAKE) asan-check

asan-check:
	$(MAKE) BUILD=build-asan OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    all unit fuzz-replay e2e

deps:
	scripts/deps.sh

demo:
	scripts/deps.sh
	$(MAKE) all
	scripts/demo.sh

# Fuzz harnesses: libFuzzer binaries with clang, and a plain replay build
# (tests/fuzz/replay.c as main) that runs every corpus file once.
FUZZ_SRC = $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES = $(FUZZ_SRC:tests/fuzz/%.c=%)

fuzz:
	@mkdir -p build-fuzz
	$(MAKE) BUILD=build-fuzz CC=clang OPT=-O1 \
	    SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" \
	    build-fuzz/libmgrok.a
	@set -e; for f in $(FUZZ_NAMES); do \
	    clang -O1 -g -Isrc -fsanitize=fuzzer,address,undefined -o build-fuzz/$$f \
	    tests/fuzz/$$f.c build-fuzz/libmgrok.a $(ALL_LDLIBS); done
	@echo "run e.g.: build-fuzz/fuzz_frame -max_total_time=60 tests/fuzz/corpus/fuzz_frame"

fuzz-replay: $(BUILD)/libmgrok.a
	@mkdir -p $(BUILD)/fuzz
	@set -e; for f in $(FUZZ_NAMES); do \
	    $(CC) $(ALL_CFLAGS) -o $(BUILD)/fuzz/$$f tests/fuzz/$$f.c tests/fuzz/replay.c \
	        $(BUILD)/libmgrok.a $(ALL_LDLIBS); \
	    $(BUILD)/fuzz/$$f tests/fuzz/corpus/$$f; done

bench: all
	bench/run.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
