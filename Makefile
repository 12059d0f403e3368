# A thin front for CMake. Every target installs what it needs first.
BUILD ?= build
PREFIX ?= /usr/local
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all deps test demo gpu install man clean

all: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

deps:
	@scripts/install-deps.sh

test: all
	cd $(BUILD) && ctest --output-on-failure -j 2

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
	rm -rf $(BUILD) build-gpu
