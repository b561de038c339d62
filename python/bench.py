#!/usr/bin/env python3
"""Python's overhead over the Rust API: invoke() latency of the same model on the same device
through edgetpu.Interpreter and through the Rust example `invoke_latency`, and set_tensor + invoke
+ get_tensor for a 300x300x3 frame; and a check that tensor() copies nothing.

    python python/bench.py                       # builds the Rust example with cargo if needed
    python python/bench.py --rust-bin target/release/examples/invoke_latency

Each case runs in alternating rounds (Rust, Python, Rust, ...); a side's figure is the lowest of
its rounds' medians of per-call times (the machine's other load shows in means, less in medians,
least in the quietest round).
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# This script sits beside the package's sources (python/edgetpu, without the compiled part): import
# the installed package instead.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
import edgetpu  # noqa: E402

CHECKOUT = Path(__file__).resolve().parents[1]


def testdata() -> Path:
    root = Path(os.environ.get("EDGETPU_TESTDATA") or CHECKOUT.parent / "shared" / "testdata")
    if not (root / "MANIFEST.md").is_file():
        sys.exit(f"test data not found at {root}: set EDGETPU_TESTDATA")
    return root


def python_latency(model, device, threads, runs, frame):
    delegates = [] if device == "cpu" else [edgetpu.load_delegate("libedgetpu.so.1", {"device": device})]
    it = edgetpu.Interpreter(model_path=str(model), experimental_delegates=delegates, num_threads=threads)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    out = it.get_output_details()[0]["index"]
    n = int(np.prod(inp["shape"])) * np.dtype(inp["dtype"]).itemsize
    data = (np.arange(n) * 7 % 251).astype(np.uint8).view(inp["dtype"]).reshape(inp["shape"])
    it.set_tensor(inp["index"], data)
    index = inp["index"]
    clock = time.perf_counter_ns
    times = []
    for run in range(runs + min(runs, 50)):
        start = clock()
        if frame:
            it.set_tensor(index, data)
            it.invoke()
            it.get_tensor(out)
        else:
            it.invoke()
        elapsed = clock() - start
        if run >= min(runs, 50):
            times.append(elapsed / 1000)
    return statistics.median(times), statistics.fmean(times)


def rust_latency(rust_bin, model, device, threads, runs, frame):
    cmd = [str(rust_bin), "--model", str(model), "--device", device, "--threads", str(threads), "--runs", str(runs)]
    if frame:
        cmd.append("--frame")
    line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"median_us=([\d.]+) mean_us=([\d.]+)", line)
    if not m:
        sys.exit(f"unexpected output of {rust_bin}: {line!r}")
    return float(m.group(1)), float(m.group(2))


def zero_copy_check(model):
    it = edgetpu.Interpreter(model_path=str(model))
    index = it.get_input_details()[0]["index"]
    a, b = it.tensor(index)(), it.tensor(index)()
    shared = np.shares_memory(a, b)
    a.flat[0] = 42
    return shared and b.flat[0] == 42 and it.get_tensor(index).flat[0] == 42


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rust-bin", help="the invoke_latency example (default: built with cargo --release)")
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per case (default 3)")
    args = parser.parse_args()
    td = testdata()
    rust_bin = args.rust_bin
    if rust_bin is None:
        target = Path(os.environ.get("CARGO_TARGET_DIR", CHECKOUT / "target"))
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "edgetpu-examples", "--example", "invoke_latency"],
                       cwd=CHECKOUT, check=True)
        rust_bin = target / "release" / "examples" / "invoke_latency"
    cases = [
        ("invoke, tiny CPU model (split_concat)", td / "tools/split_concat.tflite", "cpu", False),
        ("invoke, mobilenet_v1_0.25_128 on the CPU", td / "mobilenet_v1_0.25_128_quant.tflite", "cpu", False),
        ("invoke, compiled mobilenet_v1_0.25_128 on sim", td / "mobilenet_v1_0.25_128_quant_edgetpu.tflite", "sim",
         False),
        ("set_tensor+invoke+get_tensor, 300x300x3 frame, SSD segment 0 on sim",
         td / "pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_0_of_3_edgetpu.tflite", "sim", True),
    ]
    print(f"edgetpu {edgetpu.__version__}, Python {sys.version.split()[0]}, {args.threads} CPU thread(s), "
          f"lowest median of {max(args.rounds, 1)} rounds (its mean) in µs")
    print(f"{'case':<72} {'Rust':>16} {'Python':>16} {'Python adds':>12}")
    rounds = max(args.rounds, 1)

    for name, model, device, frame in cases:
        runs = args.runs if "mobilenet" not in name else max(args.runs // 10, 100)
        r_meds, p_meds = [], []
        for _ in range(rounds):
            r_meds.append(rust_latency(rust_bin, model, device, args.threads, runs, frame))
            p_meds.append(python_latency(model, device, args.threads, runs, frame))
        r_med, r_mean = min(r_meds)
        p_med, p_mean = min(p_meds)
        print(f"{name:<72} {r_med:>7.2f} ({r_mean:>6.1f}) {p_med:>7.2f} ({p_mean:>6.1f}) {p_med - r_med:>+11.2f}")
    # The part that set_tensor / get_tensor add: the frame loop minus invoke alone, in each process.
    seg0 = td / "pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_0_of_3_edgetpu.tflite"
    runs = max(args.runs // 10, 100)
    r_copy = min(rust_latency(rust_bin, seg0, "sim", args.threads, runs, True)[0] -
                 rust_latency(rust_bin, seg0, "sim", args.threads, runs, False)[0] for _ in range(rounds))
    p_copy = min(python_latency(seg0, "sim", args.threads, runs, True)[0] -
                 python_latency(seg0, "sim", args.threads, runs, False)[0] for _ in range(rounds))
    print(f"{'input + output copies of the 300x300x3 frame (frame loop - invoke alone)':<72} {r_copy:>16.2f} "
          f"{p_copy:>16.2f} {p_copy - r_copy:>+11.2f}")
    print(f"tensor() copies nothing (two views share memory, writes reach the interpreter): "
          f"{zero_copy_check(td / 'mobilenet_v1_0.25_128_quant.tflite')}")


if __name__ == "__main__":
    main()
