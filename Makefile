# Thin wrapper over CMake/CTest for the common commands.
#
#   make run          build, then generate text with the default model
#                     (scripts/setup.sh installs it)
#   make test         release build (gcc, -Werror) and its tests
#   make check-asan   clang ASan+UBSan build, all tests under it, and the fuzz
#                     targets for HEARTH_FUZZ_SECONDS (default 30) each
#   make check        both of the above: what CI runs
#   make fuzz         the fuzz targets for FUZZ_SECONDS (default 600) each

JOBS ?= $(shell nproc)
MAKEFLAGS += --no-print-directory
FUZZ_SECONDS ?= 600
CTEST_FLAGS ?= --output-on-failure

.PHONY: all build run test check-asan check fuzz clean

all: build

build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHEARTH_WERROR=ON
	cmake --build build -j $(JOBS)

PROMPT ?= The three most important inventions of the nineteenth century were

run: build
	./build/hearth run -p "$(PROMPT)" -n 96

test: build
	ctest --test-dir build $(CTEST_FLAGS) -j $(JOBS)

build-asan/CMakeCache.txt:
	CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DHEARTH_WERROR=ON \
	    -DHEARTH_SANITIZE=ON -DHEARTH_FUZZ=ON

check-asan: build-asan/CMakeCache.txt
	cmake --build build-asan -j $(JOBS)
	ctest --test-dir build-asan $(CTEST_FLAGS) -j $(JOBS)

check: test check-asan

fuzz: build-asan/CMakeCache.txt
	cmake --build build-asan -j $(JOBS)
	cmake -S . -B build-asan -DHEARTH_FUZZ_SECONDS=$(FUZZ_SECONDS)
	ctest --test-dir build-asan $(CTEST_FLAGS) -R '^fuzz_'; \
	    status=$$?; cmake -S . -B build-asan -DHEARTH_FUZZ_SECONDS=30 >/dev/null; exit $$status

clean:
	rm -rf build build-asan
