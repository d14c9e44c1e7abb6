#!/usr/bin/env python3
"""Per-op cost of PyTorch eager on tiny tensors: the peer of modu_bench_dispatch (same op list, same
names, same shapes, same values), and the report that puts both side by side.

Measure mode (default): times each op in a loop compiled without per-call lambda overhead (the loop
body is the statement itself, as timeit does); warm-up, then --reps repeats of at least --min-time s;
ns/op in thread CPU time (time.thread_time_ns: tiny ops and CPU autograd run on the calling thread,
and CPU time ignores the other processes of a shared machine) and in wall time. The cost of the bare
loop (`pass`) is measured too and subtracted in the report. Writes JSON (--json).

Report mode (--report FILE...): reads modu and torch JSON files (several rounds and settings), pools
the repeats of each (impl, setting), and prints per op: modu ns, torch ns per setting, the ratio of
modu to the faster torch setting (target <= 0.33), and modu's heap allocations per op.

Usage:
  bench_dispatch.py [--threads N] [--reps R] [--min-time S] [--json PATH]
  bench_dispatch.py --report FILE [FILE...]
Set OMP_WAIT_POLICY in the environment before starting Python (run_dispatch.sh does), since the
OpenMP runtime reads it once at load.
"""
import argparse
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time

TARGET = 1.0 / 3.0


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def filled(torch, shape, seed, grad=False):
    n = math.prod(shape)
    vals = [math.sin(seed + 0.37 * i) * 0.5 for i in range(n)]
    t = torch.tensor(vals, dtype=torch.float32).reshape(shape)
    if grad:
        t.requires_grad_(True)
    return t


def make_loop(stmt, namespace):
    """A function _loop(n) running `stmt` n times, with the names of `namespace` as globals."""
    src = "def _loop(_n):\n    for _ in _repeat(None, _n):\n        " + stmt + "\n"
    ns = dict(namespace)
    ns["_repeat"] = itertools.repeat
    exec(compile(src, "<bench:" + stmt + ">", "exec"), ns)
    return ns["_loop"]


def measure(args):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    cases = []  # (name, shape label, stmt, namespace)
    for shape, label in (((4,), "(4,)"), ((32, 32), "(32, 32)")):
        a, b = filled(torch, shape, 0.1), filled(torch, shape, 0.7)
        ns = {"a": a, "b": b, "add": torch.add, "mul": torch.mul, "exp": torch.exp, "tsum": torch.sum}
        cases += [
            ("add", label, "add(a, b)", ns),
            ("mul", label, "mul(a, b)", ns),
            ("add_scalar", label, "add(a, 1.5)", ns),
            ("exp", label, "exp(a)", ns),
            ("sum", label, "tsum(a)", ns),
        ]
    a8, b8 = filled(torch, (8, 8), 0.2), filled(torch, (8, 8), 0.9)
    cases.append(("matmul", "(8, 8)@(8, 8)", "mm(a8, b8)", {"a8": a8, "b8": b8, "mm": torch.matmul}))
    t32 = filled(torch, (32, 32), 0.3)
    cases.append(("transpose_view", "(32, 32).transpose(0, 1)", "t.transpose(0, 1)", {"t": t32}))

    x = filled(torch, (4, 16), 0.4)
    w1, b1 = filled(torch, (32, 16), 1.1, True), filled(torch, (32,), 1.3, True)
    w2, b2 = filled(torch, (8, 32), 1.7, True), filled(torch, (8,), 1.9, True)
    relu, linear, mean, mul = torch.relu, F.linear, torch.mean, torch.mul

    def step():
        h = relu(linear(x, w1, b1))
        y = linear(h, w2, b2)
        loss = mean(mul(y, y))
        loss.backward()
        w1.grad = None
        b1.grad = None
        w2.grad = None
        b2.grad = None

    cases.append(("mlp_step", "x(4,16) 16-32-8 fwd+bwd", "step()", {"step": step}))

    def time_loop(loop, n):
        w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        loop(n)
        c1, w1_ = time.thread_time_ns(), time.perf_counter_ns()
        return (c1 - c0) / n, (w1_ - w0) / n

    def run_case(stmt, ns):
        loop = make_loop(stmt, ns)
        loop(200)
        c0 = time.thread_time_ns()
        loop(200)
        per = max((time.thread_time_ns() - c0) / 200, 1.0)
        n = max(100, int(args.min_time * 1e9 / per))
        cpu, wall = [], []
        for _ in range(args.reps):
            c, w = time_loop(loop, n)
            cpu.append(c)
            wall.append(w)
        return cpu, wall

    overhead_cpu, overhead_wall = run_case("pass", {})
    ops = []
    for name, label, stmt, ns in cases:
        cpu, wall = run_case(stmt, ns)
        ops.append({"name": name, "shape": label, "stmt": stmt, "ns": cpu, "wall_ns": wall})

    wp = os.environ.get("OMP_WAIT_POLICY", "unset")
    result = {
        "impl": "torch",
        "setting": "OMP_WAIT_POLICY=" + wp,
        "threads": torch.get_num_threads(),
        "env": {
            "cpu": cpu_model(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "interop_threads": torch.get_num_interop_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkldnn": torch.backends.mkldnn.is_available(),
            "loadavg": loadavg(),
        },
        "loop_overhead_ns": statistics.median(overhead_cpu),
        "loop_overhead_wall_ns": statistics.median(overhead_wall),
        "ops": ops,
    }
    print(f"== PyTorch eager per-op cost ({result['setting']}, torch {torch.__version__}, "
          f"threads {result['threads']}) ==")
    print(f"load avg {loadavg()}; bare loop overhead {result['loop_overhead_ns']:.0f} ns (cpu)")
    print(f"{'op':16s} {'shape':26s} {'cpu ns/op':>24s} {'wall ns/op':>10s}")
    for o in ops:
        q = quartiles(o["ns"])
        print(f"{o['name']:16s} {o['shape']:26s} {q[1]:10.0f} [{q[0]:.0f}-{q[2]:.0f}] {statistics.median(o['wall_ns']):10.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


def quartiles(v):
    v = sorted(v)
    if len(v) < 2:
        return (v[0], v[0], v[0])
    q = statistics.quantiles(v, n=4, method="inclusive")
    return (q[0], q[1], q[2])


def report(files):
    groups = {}  # (impl, setting) -> {"env":..., "threads":..., "overhead":[...], "ops": {(name, shape): data}}
    for path in files:
        with open(path) as f:
            d = json.load(f)
        g = groups.setdefault((d["impl"], d["setting"]),
                              {"env": d["env"], "threads": d["threads"], "overhead": [], "overhead_wall": [],
                               "rounds": 0, "ops": {}})
        g["rounds"] += 1
        g["overhead"].append(d.get("loop_overhead_ns", 0.0))
        g["overhead_wall"].append(d.get("loop_overhead_wall_ns", 0.0))
        for o in d["ops"]:
            e = g["ops"].setdefault((o["name"], o["shape"]), {"ns": [], "wall_ns": [], "extra": o})
            e["ns"] += o["ns"]
            e["wall_ns"] += o.get("wall_ns", [])
    modu = [k for k in groups if k[0] == "modu"]
    torch_settings = sorted(k for k in groups if k[0] == "torch")
    if not modu or not torch_settings:
        sys.exit("bench_dispatch.py --report: need at least one modu and one torch JSON file")
    mk = modu[0]
    mg = groups[mk]

    print("== per-op cost on tiny f32 tensors: modu vs PyTorch eager (same machine, same run) ==")
    print(f"cpu            : {mg['env'].get('cpu')}")
    print(f"modu           : {mg['env'].get('compiler')}; {mg['env'].get('openblas')}")
    print(f"modu threads   : OpenMP {mg['threads']}, {mk[1]}, {mg['rounds']} round(s)")
    te = groups[torch_settings[0]]["env"]
    print(f"torch          : {te.get('torch')} (python {te.get('python')}, cpu capability {te.get('cpu_capability')}, "
          f"mkldnn {te.get('mkldnn')}), intra-op threads {groups[torch_settings[0]]['threads']}, "
          f"interop {te.get('interop_threads')}")
    for k in torch_settings:
        g = groups[k]
        print(f"torch setting  : {k[1]}: {g['rounds']} round(s); bare Python loop overhead "
              f"{statistics.median(g['overhead']):.0f} ns/iter (cpu), subtracted")
    print("timing         : ns/op in thread CPU time, median over all repeats of all rounds [p25-p75]; "
          "ratio = modu median / faster torch setting's median")
    print()

    labels = [k[1].replace("OMP_WAIT_POLICY=", "torch ") for k in torch_settings]
    head = f"{'op':15s} {'shape':25s} {'modu ns':>20s}"
    for lab in labels:
        head += f" {lab + ' ns':>22s}"
    head += f" {'modu/torch':>10s} {'wall ratio':>10s} {'new/op':>7s} {'req/op':>7s} {'ops':>5s}"
    print(head)
    misses = 0
    rows = 0
    for key, me in mg["ops"].items():
        mq = quartiles(me["ns"])
        line = f"{key[0]:15s} {key[1]:25s} {mq[1]:8.0f} [{mq[0]:.0f}-{mq[2]:.0f}]".ljust(62)
        best, best_wall = None, None
        for k in torch_settings:
            g = groups[k]
            te_ = g["ops"].get(key)
            if not te_:
                line += f" {'-':>22s}"
                continue
            ov, ovw = statistics.median(g["overhead"]), statistics.median(g["overhead_wall"])
            tq = quartiles([v - ov for v in te_["ns"]])
            tw = statistics.median([v - ovw for v in te_["wall_ns"]]) if te_["wall_ns"] else float("nan")
            line += f" {tq[1]:9.0f} [{tq[0]:.0f}-{tq[2]:.0f}]".rjust(23)
            if best is None or tq[1] < best:
                best = tq[1]
            if best_wall is None or tw < best_wall:
                best_wall = tw
        mw = statistics.median(me["wall_ns"]) if me["wall_ns"] else float("nan")
        ratio = mq[1] / best if best else float("nan")
        wratio = mw / best_wall if best_wall else float("nan")
        extra = me["extra"]
        flag = "" if ratio <= TARGET else "  << above 0.33"
        rows += 1
        misses += ratio > TARGET
        line += (f" {ratio:10.3f} {wratio:10.3f} {extra.get('heap_allocs_per_op', float('nan')):7.2f}"
                 f" {extra.get('allocator_requests_per_op', float('nan')):7.2f}"
                 f" {extra.get('dispatches_per_op', float('nan')):5.0f}{flag}")
        print(line)
    print()
    print("new/op: modu's operator new calls per op in steady state; req/op: caching-allocator requests per op;")
    print("ops: modu ops through the dispatcher per call (the MLP step's forward and backward)")
    print("wall ratio: the same ratio on wall-clock medians (noisier on a shared machine)")
    print(f"target modu/torch <= 0.33: {misses} of {rows} ops above")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--min-time", type=float, default=0.03)
    ap.add_argument("--json", default="")
    ap.add_argument("--report", nargs="+", metavar="FILE")
    args = ap.parse_args()
    if args.report:
        report(args.report)
    else:
        measure(args)


if __name__ == "__main__":
    main()
