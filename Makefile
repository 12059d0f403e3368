# A thin front for CMake. Every target installs what it needs first.
BUILD ?= build
PREFIX ?= /usr/local
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

FUZZ_SECONDS ?= 60

.PHONY: all deps test test-sanitize fuzz demo gpu install man clean

all: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

deps:
	@scripts/install-deps.sh

# Every test twice: as built for use, then built again with AddressSanitizer and UBSan (build-asan/).
test: all
	cd $(BUILD) && ctest --output-on-failure -j 2
	$(MAKE) test-sanitize

test-sanitize: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DST_CUDA=OFF -DST_SANITIZE=address,undefined $(CMAKE_FLAGS)
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j 2

# The parsers under libFuzzer, ASan and UBSan: each target FUZZ_SECONDS (or a million inputs).
fuzz:
	@scripts/install-deps.sh fuzz
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DST_CUDA=OFF -DST_FUZZ=ON -DBUILD_TESTING=OFF
	cmake --build build-fuzz -j $(JOBS)
	scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

demo: all
	scripts/demo.sh $(BUILD)

# The CUDA build for Hopper; take the build folder to the GPU machine and run scripts/gpu-run.sh there.
gpu: deps
	cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DST_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a $(CMAKE_FLAGS)
	cmake --build build-gpu -j $(JOBS)

install: all
	cmake --install $(BUILD) --prefix $(PREFIX)

man:
	@for p in man/*.1 man/*.7; do man -l $$p | col -b > /dev/null || exit 1; done; echo "man pages render"

clean:
	rm -rf $(BUILD) build-gpu build-asan build-fuzz
