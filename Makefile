# pyheap — see README.md. `make` builds; `make check` installs what is
# missing, builds and runs every test; `make demo` runs the bundled demo.

CC      ?= cc
PKGS    := libdw libelf jansson
SANITIZE ?= 0

ifeq ($(SANITIZE),1)
BUILD   ?= build/san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else
BUILD   ?= build
SANFLAGS :=
endif

WARN    := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes \
           -Wold-style-definition -Wnull-dereference -Wimplicit-fallthrough -Werror
CFLAGS  ?= -O2 -g
ALLCFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(SANFLAGS) -Iinclude -Ilib \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -MMD -MP
LDLIBS_ALL = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null)
CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)

LIB_SRC    := $(wildcard lib/*.c lib/tables/*.c)
DAEMON_SRC := $(wildcard daemon/*.c)
CLI_SRC    := $(wildcard cli/*.c)
TEST_SRC   := $(wildcard tests/*.c)

LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/%.o)
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ    := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ   := $(TEST_SRC:%.c=$(BUILD)/%.o)

LIBA    := $(BUILD)/libpyheap.a
PYHEAPD := $(BUILD)/pyheapd
PYHEAP  := $(BUILD)/pyheap
TESTBIN := $(BUILD)/check_pyheap

.PHONY: all deps check test demo bench clean install
all: $(LIBA) $(PYHEAPD) $(PYHEAP)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) -c -o $@ $<

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $(CHECK_CFLAGS) -I$(BUILD)/tests -c -o $@ $<

# The runner's suite list: every `Suite *suite_x(void)` defined in tests/.
$(BUILD)/tests/suites.h: $(filter-out tests/check_main.c,$(TEST_SRC))
	@mkdir -p $(dir $@)
	grep -h '^Suite \*suite_[a-z0-9_]*(void)$$' $^ | sed 's/^Suite \*\(suite_[a-z0-9_]*\)(void)$$/SUITE(\1)/' | sort > $@.tmp
	mv $@.tmp $@

$(BUILD)/tests/check_main.o: $(BUILD)/tests/suites.h

$(LIBA): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(PYHEAPD): $(DAEMON_OBJ) $(LIBA)
	$(CC) $(CFLAGS) $(SANFLAGS) -o $@ $^ $(LDLIBS_ALL) -lpthread

$(PYHEAP): $(CLI_OBJ) $(LIBA)
	$(CC) $(CFLAGS) $(SANFLAGS) -o $@ $^ $(LDLIBS_ALL) -lpthread

$(TESTBIN): $(TEST_OBJ) $(LIBA)
	$(CC) $(CFLAGS) $(SANFLAGS) -o $@ $^ $(LDLIBS_ALL) $(CHECK_LIBS) -lpthread

# Install build and test dependencies on a fresh Debian machine (as root);
# does nothing when everything is present.
deps:
	@sh tools/install-deps

test: all $(TESTBIN)
	PYHEAP_SRCDIR=$(CURDIR) PYHEAP_BUILD=$(CURDIR)/$(BUILD) $(TESTBIN)
	$(MAKE) BUILD=$(BUILD) SANITIZE=$(SANITIZE) fuzz-run

check: deps
	$(MAKE) test

demo: deps
	$(MAKE) all
	sh tools/demo $(BUILD)

# tools/bench's helper (bulk-copy floor, library census).
$(BUILD)/bench-helper: $(BUILD)/tools/bench-helper.o $(LIBA)
	$(CC) $(CFLAGS) $(SANFLAGS) -o $@ $^ $(LDLIBS_ALL) -lpthread

bench: deps
	$(MAKE) all $(BUILD)/bench-helper
	sh tools/bench $(BUILD)

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(DAEMON_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d) \
    $(BUILD)/tools/bench-helper.d

# ---- fuzzing (issue 6; docs/operations.md) ----------------------------------
# libFuzzer harnesses built with clang, ASan and UBSan. `make fuzz` builds
# them; `make fuzz-run` runs each for FUZZ_SECONDS with a fixed seed over a
# scratch copy of fuzz/corpus/ (part of `make test`).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 12
FUZZ_BUILD   := $(BUILD)/fuzz
FUZZ_FLAGS   := -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -Iinclude -Ilib \
                $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)
FUZZERS      := $(FUZZ_BUILD)/fuzz_proto $(FUZZ_BUILD)/fuzz_walk $(FUZZ_BUILD)/fuzz_snapfile

.PHONY: fuzz fuzz-run
.SECONDARY: $(FUZZ_LIB_OBJ)
fuzz: $(FUZZERS)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -MMD -MP -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -c -o $@ $<

-include $(FUZZ_LIB_OBJ:.o=.d)

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -o $@ $^ $(LDLIBS_ALL)

fuzz-run: $(FUZZERS)
	@for f in proto walk snapfile; do \
	  rm -rf $(FUZZ_BUILD)/corpus-$$f && mkdir -p $(FUZZ_BUILD)/corpus-$$f && \
	  echo "fuzz_$$f: $(FUZZ_SECONDS) s, seed 1" && \
	  $(FUZZ_BUILD)/fuzz_$$f -seed=1 -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/crash-$$f- \
	    $(FUZZ_BUILD)/corpus-$$f fuzz/corpus/$$f 2>$(FUZZ_BUILD)/fuzz_$$f.log; \
	  rc=$$?; grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec)|cov:' $(FUZZ_BUILD)/fuzz_$$f.log | tail -3; \
	  if [ $$rc -ne 0 ]; then tail -40 $(FUZZ_BUILD)/fuzz_$$f.log; echo "fuzz_$$f FAILED"; exit 1; fi; \
	done

# ---- install (issue 6) -------------------------------------------------------
PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man1 \
	  $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR)
	install -m 0755 $(PYHEAP) $(DESTDIR)$(BINDIR)/pyheap
	install -m 0755 $(PYHEAPD) $(DESTDIR)$(SBINDIR)/pyheapd
	install -m 0644 man/pyheap.1 $(DESTDIR)$(MANDIR)/man1/pyheap.1
	install -m 0644 man/pyheapd.8 $(DESTDIR)$(MANDIR)/man8/pyheapd.8
	sed 's|@SBINDIR@|$(SBINDIR)|g' systemd/pyheapd.service > $(DESTDIR)$(UNITDIR)/pyheapd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/pyheapd.service
	install -m 0644 systemd/pyheapd.socket $(DESTDIR)$(UNITDIR)/pyheapd.socket
	install -m 0644 systemd/pyheapd.sysusers $(DESTDIR)$(SYSUSERSDIR)/pyheapd.conf
