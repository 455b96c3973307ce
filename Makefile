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
	$(CC) $(CFLAGS) $(SANFLAGS) -o $@ $^ $(LDLIBS_ALL)

$(TESTBIN): $(TEST_OBJ) $(LIBA)
	$(CC) $(CFLAGS) $(SANFLAGS) -o $@ $^ $(LDLIBS_ALL) $(CHECK_LIBS) -lpthread

# Install build and test dependencies on a fresh Debian machine (as root);
# does nothing when everything is present.
deps:
	@sh tools/install-deps

test: all $(TESTBIN)
	PYHEAP_SRCDIR=$(CURDIR) PYHEAP_BUILD=$(CURDIR)/$(BUILD) $(TESTBIN)

check: deps
	$(MAKE) test

demo: deps
	$(MAKE) all
	sh tools/demo $(BUILD)

# tools/bench's helper (bulk-copy floor, library census).
$(BUILD)/bench-helper: $(BUILD)/tools/bench-helper.o $(LIBA)
	$(CC) $(CFLAGS) $(SANFLAGS) -o $@ $^ $(LDLIBS_ALL)

bench: deps
	$(MAKE) all $(BUILD)/bench-helper
	sh tools/bench $(BUILD)

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(DAEMON_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
