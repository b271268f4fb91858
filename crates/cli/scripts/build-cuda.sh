#!/usr/bin/env bash
# Build `skinlens` with the `cuda` feature on a machine that has neither a GPU nor a CUDA install.
#
#   crates/cli/scripts/build-cuda.sh            # prints the binary's path on its last line
#   CUDA_COMPUTE_CAP=80 crates/cli/scripts/build-cuda.sh    # Ampere and newer (PTX JIT)
#
# What it does, all without root and outside the system:
# 1. The CUDA toolkit from PyPI wheels into ${XDG_CACHE_HOME:-~/.cache}/skinlens/cuda-13.0 (once;
#    later runs reuse it). The cu12 nvcc wheels hold only ptxas, not nvcc; the CUDA 13 wheels
#    (nvidia-cuda-nvcc, nvidia-nvvm, nvidia-cuda-crt, …) form a whole toolkit under nvidia/cu13.
#    CUDA 13.0 is the oldest CUDA 13 (its PTX loads on any r580+ driver) and cudarc 0.19 knows it.
# 2. The link-time pieces a wheel install lacks: `libX.so` names for the versioned libraries, and
#    a stub `libcuda.so` (the driver API is the NVIDIA driver's, never part of a toolkit; candle
#    makes cudarc link it). The stub's functions all answer CUDA_ERROR_STUB_LIBRARY; it is on the
#    link path only, never on the binary's run path, so a real driver is used where one exists.
# 3. `cargo rustc --features cuda` into its own target folder (target/cuda, or
#    $SKINLENS_CUDA_TARGET_DIR), with CUDA_COMPUTE_CAP for candle's kernels (nvcc → PTX; no GPU is
#    asked) and an rpath to the toolkit's libraries (cudart, cuBLAS, cuRAND, NVRTC).
# 4. Checks the binary: `--version` names CUDA and the compute capability, and
#    `train --device cuda` fails at once with a clear message when no GPU is usable.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../../.." && pwd)
compute_cap=${CUDA_COMPUTE_CAP:-90}
cache=${SKINLENS_CUDA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skinlens}
target_dir=${SKINLENS_CUDA_TARGET_DIR:-$repo/target/cuda}
toolkit_line=13.0
root=$cache/cuda-$toolkit_line
cuda_home=$root/nvidia/cu13

# CUDA 13.0 Update 2, as NVIDIA's toolkit bundles it.
pinned=(
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88
    nvidia-cublas==13.1.0.3 nvidia-curand==10.4.0.35
)
# If the registry lacks a pinned version: the newest of the same CUDA 13.0 line.
fallback=(
    'nvidia-cuda-nvcc>=13.0,<13.1' 'nvidia-nvvm>=13.0,<13.1' 'nvidia-cuda-crt>=13.0,<13.1'
    'nvidia-cuda-runtime>=13.0,<13.1' 'nvidia-cuda-cccl>=13.0,<13.1' 'nvidia-cuda-nvrtc>=13.0,<13.1'
    'nvidia-cublas>=13.0,<13.2' 'nvidia-curand>=10.4.0,<10.4.1'
)

seconds() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(seconds)" 'BEGIN { printf "%.1f", b - a }'; }

install_toolkit() {
    local staging=$root.partial
    rm -rf "$staging"
    mkdir -p "$staging/wheels"
    echo "build-cuda: downloading the CUDA $toolkit_line toolkit wheels into $root" >&2
    if ! python3 -m pip download --quiet --no-cache-dir --no-deps --only-binary=:all: -d "$staging/wheels" "${pinned[@]}"; then
        echo "build-cuda: a pinned wheel is missing from the registry; taking the newest of CUDA $toolkit_line instead" >&2
        rm -f "$staging/wheels"/*
        python3 -m pip download --quiet --no-cache-dir --no-deps --only-binary=:all: -d "$staging/wheels" "${fallback[@]}"
    fi
    local bytes
    bytes=$(du -sb "$staging/wheels" | cut -f1)
    echo "build-cuda: downloaded $(awk -v b="$bytes" 'BEGIN { printf "%.0f", b / 1048576 }') MiB: $(cd "$staging/wheels" && ls | sed 's/-py3-.*//' | tr '\n' ' ')" >&2
    # pip installs in one go, so the wheels' shared nvidia/cu13 tree is merged, exec bits kept.
    python3 -m pip install --quiet --root-user-action=ignore --no-cache-dir --no-deps --no-index --target "$staging" "$staging/wheels"/*.whl
    rm -rf "$staging/wheels"
    link_names "$staging/nvidia/cu13"
    echo "${pinned[*]}" >"$staging/pins"
    rm -rf "$root"
    mv "$staging" "$root"
}

# The unversioned names the linker looks for, and the driver stub (see the header).
link_names() {
    local lib=$1/lib
    for name in cudart cublas cublasLt curand nvrtc; do
        local versioned
        versioned=$(cd "$lib" && ls "lib$name.so."* | grep -E "^lib$name\.so\.[0-9]+$" | head -1)
        ln -sf "$versioned" "$lib/lib$name.so"
    done
    mkdir -p "$lib/stubs" "$1/../no-driver"
    # Every driver function cudarc binds (all CUDA versions) and cuda.h declares (exported names).
    local cudarc
    cudarc=$(cd "$repo" && cargo metadata --format-version 1 --locked --features skinlens-cli/cuda \
        | python3 -c 'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"))')
    python3 - "$1/include/cuda.h" "$(dirname "$cudarc")/src/driver/sys/mod.rs" "$lib/stubs/libcuda.c" <<'EOF'
import re, subprocess, sys
header, bindings, out = sys.argv[1:]
text = subprocess.run(["cc", "-E", "-P", "-I", header.rsplit("/", 1)[0], header], capture_output=True, text=True, check=True).stdout
names = set(re.findall(r"\bCUresult\s+(cu\w+)\s*\(", text))
names |= set(re.findall(r"pub unsafe fn (cu\w+)\(.*\) -> CUresult", open(bindings).read()))
with open(out, "w") as f:
    f.write("/* Link-time stand-in for the NVIDIA driver: every call answers CUDA_ERROR_STUB_LIBRARY (34). */\n")
    f.write('static const char *message = "no NVIDIA driver (skinlens build-cuda stub)";\n')
    for name in sorted(names):
        if name in ("cuGetErrorString", "cuGetErrorName"):
            f.write(f"int {name}(int error, const char **text) {{ (void)error; *text = message; return 0; }}\n")
        else:
            f.write(f"int {name}(void) {{ return 34; }}\n")
print(f"build-cuda: driver stub with {len(names)} functions", file=sys.stderr)
EOF
    cc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$lib/stubs/libcuda.so" "$lib/stubs/libcuda.c"
    # For running the binary on a machine without the driver (the checks below), never linked.
    ln -sf ../cu13/lib/stubs/libcuda.so "$1/../no-driver/libcuda.so.1"
}

started=$(seconds)
if [[ ! -x $cuda_home/bin/nvcc || ! -e $cuda_home/lib/stubs/libcuda.so || "$(cat "$root/pins" 2>/dev/null)" != "${pinned[*]}" ]]; then
    install_toolkit
    echo "build-cuda: toolkit installed in $(elapsed "$started") s ($(du -sh "$root" | cut -f1) on disk)" >&2
else
    echo "build-cuda: toolkit cached in $root" >&2
fi
toolkit_version=$("$cuda_home/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
echo "build-cuda: nvcc $toolkit_version, compute capability $compute_cap, target $target_dir" >&2

build_started=$(seconds)
export CUDA_HOME=$cuda_home CUDA_COMPUTE_CAP=$compute_cap SKINLENS_CUDA_VERSION=$toolkit_version
export PATH=$cuda_home/bin:$PATH CARGO_TARGET_DIR=$target_dir
cd "$repo"
cargo rustc --release --locked -p skinlens-cli --bin skinlens --features cuda -- -C link-arg=-Wl,-rpath,"$cuda_home/lib"
binary=$target_dir/release/skinlens
echo "build-cuda: built in $(elapsed "$build_started") s (all: $(elapsed "$started") s)" >&2

# The checks run the binary here; without a driver on this machine, against the stub.
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
    export LD_LIBRARY_PATH=$root/nvidia/no-driver${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
version=$("$binary" --version)
echo "build-cuda: $version" >&2
grep -q "CUDA $toolkit_version" <<<"$version" || { echo "build-cuda: --version does not name CUDA $toolkit_version" >&2; exit 1; }
grep -q "compute capability" <<<"$version" || { echo "build-cuda: --version does not name the compute capability" >&2; exit 1; }
if [[ -n ${LD_LIBRARY_PATH:-} && $LD_LIBRARY_PATH == *no-driver* ]]; then
    probe=$(mktemp -d)
    if "$binary" train --device cuda --out "$probe/run" >"$probe/out" 2>&1; then
        echo "build-cuda: train --device cuda succeeded without a driver" >&2
        exit 1
    fi
    grep -q "CUDA" "$probe/out" || { echo "build-cuda: unclear failure of train --device cuda:" >&2; cat "$probe/out" >&2; exit 1; }
    echo "build-cuda: without a GPU, train --device cuda stops at once: $(head -1 "$probe/out")" >&2
    rm -rf "$probe"
fi
echo "$binary"
