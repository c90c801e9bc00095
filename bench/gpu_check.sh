#!/usr/bin/env bash
# GPU check (issue 27, item 9): on a CUDA machine with a copy of this repository and no package registry, install
# synthmed over the machine's own torch, run the tests that need a GPU, measure ResNet-18 (28) training images/s and
# a BreastMNIST none / oversample / ddpm grid at seeds 0-2 (configs/gpu-check.yaml), and print one JSON line (also
# written to $OUT/gpu_check.json when $OUT is set), in under 8 minutes.
#
#   bash bench/gpu_check.sh               # on the GPU machine
#   bash bench/gpu_check.sh --cpu-smoke   # anywhere: every step shrunk to seconds, on the CPU (GPU_CHECK_CPU_SMOKE=1)
#
# Data: $SYNTHMED_DATA, else shared/data/medmnist in or beside the repository; without breastmnist.npz the grid is
# skipped and the JSON says why. Exit status 0 when every step that ran passed, else 1 (the JSON line comes out
# either way). Env: PYTHON (default python3), GPU_CHECK_BUDGET_S (default 470, the whole check).
set -euo pipefail

SMOKE=${GPU_CHECK_CPU_SMOKE:-0}
for arg in "$@"; do
    case $arg in
        --cpu-smoke) SMOKE=1 ;;
        -h | --help)
            sed -n '2,12p' "$0"
            exit 0
            ;;
        *)
            echo "unknown argument $arg (use --cpu-smoke or --help)" >&2
            exit 2
            ;;
    esac
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
START=$(date +%s)
DEADLINE=$((START + ${GPU_CHECK_BUDGET_S:-470}))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
SYSTEM_PY=${PYTHON:-python3}
export SYNTHMED_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg

# Every step writes WORK/<step>.log and WORK/<step>.rc (124 when its time limit ended it).
run_step() {
    local name=$1 limit=$2
    shift 2
    local rc=0
    timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1 || rc=$?
    echo "$rc" >"$WORK/$name.rc"
}

left() { echo $((DEADLINE - $(date +%s))); }

# A step's time limit: at most $1 seconds and what is left of the whole budget, never under 5 (timeout 0 = none).
limit() {
    local l
    l=$(left)
    ((l > $1)) && l=$1
    ((l < 5)) && l=5
    echo "$l"
}

# Why a step failed, in one line: its log's first "error:" line but pip's generic ones, else its last line.
reason() {
    awk 'tolower($0) ~ /error:/ && !/subprocess-exited-with-error|metadata-generation-failed/ && found == "" { found = $0 }
         { last = $0 }
         END { s = found != "" ? found : last; sub(/^[ \t]+/, "", s); print substr(s, 1, 300) }' "$1"
}

src_on_path() { export PYTHONPATH=$REPO/src${PYTHONPATH:+:$PYTHONPATH}; }

# 1. Install: a venv over the system site-packages (the machine's torch), synthmed without dependencies or build
# isolation (no registry). If that fails, or torch is not visible from the venv (a Python that is itself a venv or
# conda env does not pass its packages on), the given Python with src/ on PYTHONPATH; the JSON says which.
VENV=$REPO/.venv-gpu
INSTALL="venv $VENV, pip install -e"
if [[ $SMOKE == 1 ]]; then
    VENV=$WORK/venv  # the smoke test leaves the checkout as it was
fi
PY=$SYSTEM_PY
run_step venv 60 "$SYSTEM_PY" -m venv --system-site-packages "$VENV"
if [[ $(cat "$WORK/venv.rc") != 0 ]]; then
    INSTALL="fallback: $SYSTEM_PY with PYTHONPATH=src (venv failed: $(reason "$WORK/venv.log"))"
    src_on_path
elif ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1 && "$SYSTEM_PY" -c "import torch" >/dev/null 2>&1; then
    INSTALL="fallback: $SYSTEM_PY with PYTHONPATH=src (its torch is not visible from a --system-site-packages venv)"
    src_on_path
else
    PY=$VENV/bin/python
    run_step install 120 "$PY" -m pip install --no-deps --no-build-isolation --no-index -e "$REPO"
    if [[ $(cat "$WORK/install.rc") != 0 ]]; then
        INSTALL="fallback: venv with PYTHONPATH=src (pip install -e failed: $(reason "$WORK/install.log"))"
        src_on_path
    fi
fi

# 2. The environment: device, versions, and the dependencies pyproject.toml lists that are not installed.
run_step env 60 "$PY" - "$WORK/env.json" <<'PYEOF'
import importlib.metadata as md
import json
import re
import sys

deps = re.search(r"^dependencies = \[(.*?)^\]", open("pyproject.toml").read(), re.S | re.M).group(1)
names = [re.split(r"[<>=!~\[ ;]", d.strip())[0] for d in re.findall(r'"([^"]+)"', deps)] + ["pytest"]
missing, versions = [], {}
for name in names:
    try:
        versions[name] = md.version(name)
    except md.PackageNotFoundError:
        missing.append(name)
env = {"python": sys.version.split()[0], "missing_dependencies": missing, "torch": versions.get("torch")}
try:
    import torch

    env["cuda_available"] = torch.cuda.is_available()
    env["cuda"] = torch.version.cuda
    env["device"] = torch.cuda.get_device_name(0) if env["cuda_available"] else "cpu (no CUDA device)"
    env["bf16_supported"] = bool(env["cuda_available"] and torch.cuda.is_bf16_supported())
except Exception as err:  # torch absent or broken: the JSON says so instead of the check crashing
    env["torch_error"] = f"{type(err).__name__}: {err}"
try:
    import synthmed

    env["synthmed"] = synthmed.__file__
except Exception as err:
    env["synthmed_error"] = f"{type(err).__name__}: {err}"
json.dump(env, open(sys.argv[1], "w"))
PYEOF
HAVE_TORCH=$("$SYSTEM_PY" -c 'import json,sys; e=json.load(open(sys.argv[1])); print(int(bool(e.get("torch")) and "torch_error" not in e and "synthmed_error" not in e))' "$WORK/env.json" 2>/dev/null || echo 0)
DEVICE=cuda
if [[ $SMOKE == 1 ]]; then
    DEVICE=cpu
fi

# 3. The tests that need a GPU (skipped, with the reason, on a CPU).
if [[ $HAVE_TORCH == 1 ]]; then
    run_step tests "$(limit 180)" "$PY" -m pytest -q -rs -p no:cacheprovider \
        --junitxml="$WORK/junit.xml" tests/test_gpu.py \
        tests/test_diffaugment.py::test_cuda_batches_get_the_cpu_draws_and_the_same_result
fi

# 4. ResNet-18 (28) training images/s with the trainer's step (fp32 and bf16).
if [[ $HAVE_TORCH == 1 ]]; then
    if [[ $SMOKE == 1 ]]; then
        SIZES=(--steps 1 --batch 8 --matmul-size 256)
    else
        SIZES=(--steps 200)  # 128-image batches: a GPU step takes milliseconds
    fi
    run_step throughput "$(limit 120)" "$PY" bench/train_throughput.py --device "$DEVICE" \
        --models resnet18 --skip-memory "${SIZES[@]}" --out "$WORK/throughput.json"
fi

# 5. The BreastMNIST grid, in whatever time is left (its store is read even when the limit cut it short).
DATA=""
for candidate in "${SYNTHMED_DATA:-}" "$REPO/shared/data/medmnist" "$REPO/../shared/data/medmnist"; do
    if [[ -n $candidate && -f $candidate/breastmnist.npz ]]; then
        DATA=$(cd "$candidate" && pwd)
        break
    fi
done
if [[ $HAVE_TORCH == 1 && -n $DATA ]]; then
    GRID=(--config configs/gpu-check.yaml --device "$DEVICE" --out "$WORK/grid" --data-root "$DATA")
    if [[ $SMOKE == 1 ]]; then
        GRID+=(--seeds 0 --epochs 1 --real-per-class 20 --precision fp32 --workers 1 --no-fidelity)
        GRID+=(--synthetic-per-class 4 -p steps=2 -p warmup=1 -p ddim_steps=2)
    fi
    GRID_START=$(date +%s)
    run_step grid "$(limit $(($(left) - 15)))" "$PY" -m synthmed run "${GRID[@]}"
    echo $(($(date +%s) - GRID_START)) >"$WORK/grid.seconds"
fi

# 6. One JSON line from what the steps left.
"$SYSTEM_PY" - "$WORK" "$INSTALL" "$DATA" "$SMOKE" "$START" >"$WORK/gpu_check.json" <<'PYEOF'
import csv
import json
import sqlite3
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

work, install, data, smoke, start = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1", int(sys.argv[5])


def read(name):
    path = work / name
    return path.read_text().strip() if path.exists() else None


def status(step):
    """ok / timed out / not run, or failed (exit N) with the log's last line."""
    rc = read(f"{step}.rc")
    if rc is None:
        return "not run"
    if rc in ("0", "124", "137"):
        return "ok" if rc == "0" else "timed out (its time limit ended it)"
    tail = (read(f"{step}.log") or "").splitlines()[-1:] or [""]
    return f"failed (exit {rc}): {tail[0][-300:]}"


env = json.loads(read("env.json") or "{}")
importable = bool(env.get("torch")) and "torch_error" not in env and "synthmed_error" not in env


def outcome(step):
    """The step's status, or why it did not run."""
    if read(f"{step}.rc") is None and not importable:
        return "skipped: torch or synthmed does not import here (see torch_error / synthmed_error)"
    return status(step)

result = {
    "check": "cpu-smoke" if smoke else "gpu",
    "device": env.get("device"),
    "torch": env.get("torch"),
    "cuda": env.get("cuda"),
    "bf16_supported": env.get("bf16_supported"),
    "python": env.get("python"),
    "install": install,
    "missing_dependencies": env.get("missing_dependencies"),
}
for key in ("torch_error", "synthmed_error"):
    if key in env:
        result[key] = env[key]

tests = {"status": outcome("tests")}
if (work / "junit.xml").exists():
    suite = ET.parse(work / "junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    tests.update(
        passed=counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
        failed=counts["failures"] + counts["errors"],
        skipped=counts["skipped"],
        failed_names=[c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None
                      or c.find("error") is not None],
    )
    reasons = {s.get("message") for s in suite.iter("skipped")}
    if reasons:
        tests["skip_reasons"] = sorted(r for r in reasons if r)
result["tests"] = tests

throughput = {"status": outcome("throughput")}
if (work / "throughput.json").exists():
    bench = json.loads(read("throughput.json"))
    model = bench["models"]["resnet18"]
    throughput.update(
        model="resnet18 (28 px)",
        batch=bench["batch"],
        steps=model["fp32"]["steps"],
        images_per_s={p: model[p]["images_per_s"] for p in model},
        auto_precision=bench["auto_precision"],
        matmul_gflops=bench["matmul_gflops"],
    )
result["train_throughput"] = throughput

grid = {"status": outcome("grid"), "config": "configs/gpu-check.yaml"}
if not data:
    grid["status"] = "skipped: no breastmnist.npz in $SYNTHMED_DATA or shared/data/medmnist (in or beside the repo)"
else:
    grid["data"] = data
if read("grid.seconds") is not None:
    grid["wall_s"] = int(read("grid.seconds"))
summary = work / "grid" / "summary.csv"
store = work / "grid" / "results.sqlite"
if summary.exists():  # the report's own means
    with open(summary, newline="") as handle:
        rows = list(csv.DictReader(handle))
    grid["test_auc_mean"] = {r["method"]: round(float(r["test_auc_mean"]), 4) for r in rows}
    grid["runs"] = {r["method"]: int(r["n"]) for r in rows}
elif store.exists():  # cut short before the report: the runs stored so far
    with sqlite3.connect(store) as conn:
        rows = conn.execute("SELECT method, AVG(test_auc), COUNT(*) FROM runs GROUP BY method").fetchall()
    grid["test_auc_mean"] = {m: round(a, 4) for m, a, _ in rows}
    grid["runs"] = {m: n for m, _, n in rows}
    grid["note"] = "no report (the grid did not finish): means of the runs stored"
result["grid"] = grid
result["wall_s"] = int(time.time()) - start
result["logs"] = str(work)
result["ok"] = all(
    part["status"] in ("ok", "not run") or part["status"].startswith("skipped")
    for part in (tests, throughput, grid)
) and not env.get("missing_dependencies") and "torch_error" not in env and tests.get("failed", 0) == 0
print(json.dumps(result, separators=(",", ":")))
PYEOF

cat "$WORK/gpu_check.json"
if [[ -n ${OUT:-} ]]; then
    mkdir -p "$OUT"
    cp "$WORK/gpu_check.json" "$OUT/gpu_check.json"
    cp "$WORK"/*.log "$OUT/" 2>/dev/null || true  # the step logs, for a failure's details
fi
"$SYSTEM_PY" -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["ok"] else 1)' "$WORK/gpu_check.json"
