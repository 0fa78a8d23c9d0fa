#!/usr/bin/env bash
# Builds the `adag` binary with CUDA support on a machine without a GPU or a system CUDA toolkit:
# the toolkit (nvcc, cudart, nvrtc, cccl, nvvm) comes from NVIDIA's PyPI wheels, and link-time
# stubs for libcuda/cuBLAS/cuRAND are generated from cudarc's own symbol lists (the recipe in
# ../shared/reference/rust-stack.md §8). The stubs exist only to link: the binary loads the real
# driver libraries on the GPU machine. Carry target/cuda/release/adag there.
#
#   bash tools/build_cuda.sh            # compute capability 90 (H100/H200)
#   CUDA_COMPUTE_CAP=80 bash tools/build_cuda.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
W=$ROOT/tools/cuda-sdk          # git-ignored
CH=$W/nvidia/cu13
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/cuda}

if [ ! -x "$CH/bin/nvcc" ]; then
  mkdir -p "$W/whl"
  python3 -m pip download -q --no-deps -d "$W/whl" \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-cccl==13.0.85 nvidia-nvvm==13.0.88
  for w in "$W"/whl/*.whl; do (cd "$W" && python3 -m zipfile -e "$w" .); done
  chmod +x "$CH"/bin/* "$CH"/nvvm/bin/*
  ln -sf libnvrtc.so.13 "$CH/lib/libnvrtc.so"
  ln -sf libcudart.so.13 "$CH/lib/libcudart.so"
fi

# cudarc's sources must be present to read its symbol lists.
cargo fetch -q
CUDARC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-*/src 2>/dev/null | sort -V | tail -1)
if [ -z "$CUDARC" ]; then
  echo "build_cuda.sh: cudarc's sources not found after cargo fetch" >&2
  exit 1
fi
mkdir -p "$CH/lib/stubs"
stub() { # module, library name, soname
  grep -ohE "pub (unsafe )?fn [A-Za-z0-9_]+\(" "$CUDARC/$1/sys/mod.rs" \
    | sed -E 's/pub (unsafe )?fn //;s/\(//' | sort -u | sed 's/.*/void &(void){}/' >"$CH/lib/stubs/$2.c"
  gcc -shared -fPIC -o "$CH/lib/stubs/lib$2.so" -Wl,-soname,"$3" "$CH/lib/stubs/$2.c"
}
stub driver cuda libcuda.so.1
stub cublas cublas libcublas.so.13
stub cublaslt cublasLt libcublasLt.so.13
stub curand curand libcurand.so.10

export CUDA_HOME=$CH PATH=$CH/bin:$PATH CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export LIBRARY_PATH=$CH/lib:$CH/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}
cargo build --release --features cuda --bin adag
echo "built $CARGO_TARGET_DIR/release/adag (CUDA, compute capability $CUDA_COMPUTE_CAP)"
ldd "$CARGO_TARGET_DIR/release/adag" | grep -E "cuda|cublas|curand|nvrtc" || true
