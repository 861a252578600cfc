"""The bench's summary: per-case rates and ratios, the targets, the printed table and RESULTS.md's history."""

from __future__ import annotations

import os
from pathlib import Path

from flops import model_flops
from harness import HERE, log

RESULTS_MD = HERE / "RESULTS.md"


def _dtype_of(case: dict) -> str:
    if case["kind"] == "plain":
        return case["dtype"]
    args = case.get("args") or []
    if "--dtype" in args:
        return args[args.index("--dtype") + 1]
    return "bfloat16" if case.get("devices", "").startswith("cuda") else "float32"


def summarise(cases: dict, results: dict, lengths, shape, device) -> dict:
    flops = model_flops(lengths, shape)
    tokens = int(sum(lengths))
    peaks = results.get("peak_gflops", {})
    base = next((c for k, c in cases.items() if k.endswith("plain-f32")), None)
    out = {}
    for key, c in cases.items():
        pool_rows = results.get("pool", {}).get("rows")
        n_rows = c["rows"]  # the pool may run on the corpus's first rows only (GPU hosts)
        f = flops if n_rows == len(lengths) else model_flops(lengths[:n_rows], shape)
        tok = tokens if n_rows == len(lengths) else int(sum(lengths[:n_rows]))
        dtype = _dtype_of(c)
        peak = peaks.get(dtype)
        row = {
            "kind": c["kind"],
            "dtype": dtype,
            "wall_s": round(c["wall_s"], 2),
            "all_walls_s": [round(w, 2) for w in c.get("all_walls_s", [])],
            "encode_s": round(c["encode_s"], 2),
            "rows": n_rows,
            "rows_per_s": n_rows / c["wall_s"],
            "tokens_per_s": tok / c["wall_s"],
            "encode_rows_per_s": n_rows / c["encode_s"] if c["encode_s"] else None,
            "encode_tokens_per_s": tok / c["encode_s"] if c["encode_s"] else None,
            "pct_peak_encode": 100 * f / c["encode_s"] / (peak * 1e9) if peak and c["encode_s"] else None,
            "pct_peak_wall": 100 * f / c["wall_s"] / (peak * 1e9) if peak else None,
            "foreign_cpu": c.get("foreign_cpu"),
        }
        ref = (
            cases.get("pool-1x2-chatspace") if key.startswith("pool") and pool_rows != len(lengths) else base
        )
        if ref is not None and ref["rows"] == n_rows:
            row["x_plain_wall"] = ref["wall_s"] / c["wall_s"]
            row["x_plain_encode"] = ref["encode_s"] / c["encode_s"] if c["encode_s"] else None
        for k in (
            "padding_efficiency",
            "batches",
            "recompiles",
            "oom_splits",
            "busy_s",
            "idle_s",
            "timings",
            "load_s",
            "warmup_s",
            "gpu",
            "encoder",
            "stages_s",
            "devices",
            "args",
            "pool",
        ):
            if c.get(k) is not None:
                row[k] = c[k]
        out[key] = row
    return out


def targets(results: dict, cuda: bool) -> list[dict]:
    c = results["cases"]
    q = results.get("cosine_to_plain_f32", {})
    sts = results.get("sts_spearman_x100", {})
    out = []

    def add(name, value, goal, ok, note=""):
        out.append({"target": name, "value": value, "goal": goal, "met": bool(ok), "note": note})

    def ratio(a, b, field="wall_s"):
        return c[b][field] / c[a][field] if a in c and b in c and c[a][field] else None

    if not cuda:
        r = ratio("chatspace-f32", "plain-f32")
        add("CPU float32 end to end vs plain encode (whole process)", r, ">= 1.0", r is not None and r >= 1.0)
        r = ratio("chatspace-bf16", "plain-f32")
        re_ = ratio("chatspace-bf16", "plain-f32", "encode_s")
        add(
            "CPU bfloat16 vs plain float32 (whole process)",
            r,
            ">= 1.5",
            r is not None and r >= 1.5,
            f"encode-only {re_:.2f}x" if re_ else "",
        )
    else:
        r = ratio("chatspace-bf16", "plain-f16")
        add("GPU chatspace bf16 vs plain float16 (whole process)", r, "> 1.0", r is not None and r > 1.0)
    if "chatspace-f32" in q:
        v = q["chatspace-f32"]["min"]
        add("float32 per-row cosine to plain encode (min)", v, ">= 0.99999", v >= 0.99999)
    if "chatspace-bf16" in q:
        v = q["chatspace-bf16"]["min"]
        add("bfloat16 per-row cosine to float32 (min)", v, ">= 0.999", v >= 0.999)
    if "chatspace-bfloat16" in sts:
        v = sts["chatspace-bfloat16"]
        add("STS-B Spearman x100, bfloat16", v, ">= 81.9", v >= 81.9)
    if "chatspace-float32" in sts:
        v = sts["chatspace-float32"]
        add("STS-B Spearman x100, float32", v, "== plain (82.03)", abs(v - sts.get("plain-f32", v)) < 0.01)
    if "pool-2x1-chatspace" in c and "pool-1x2-chatspace" in c:
        r = ratio("pool-2x1-chatspace", "pool-1x2-chatspace")
        add("2 workers x 1 thread vs 1 worker x 2 threads", r, ">= 0.9", r is not None and r >= 0.9)
        st_best = min(c[k]["wall_s"] for k in ("pool-st-2x", "pool-st-2x-omp1") if k in c)
        r = st_best / c["pool-2x1-chatspace"]["wall_s"]
        add("2-worker pool vs SentenceTransformer's pool (its best)", r, "> 1.0 (clearly)", r > 1.05)
    return out


def _fmt(v, spec="{:.2f}"):
    return "-" if v is None else spec.format(v)


def render(results: dict) -> str:
    env = results["env"]
    lines = [
        "",
        f"chatspace bench - {env['date']} - {env['host']}: {env['cpu']}, {env['cores']} cores"
        + (f", {env['gpu']}" if env.get("gpu") else "")
        + f"; torch {env['torch']}; git {env.get('git')}",
        f"CPU features: {', '.join(env.get('cpu_flags') or []) or 'unknown'}; native bfloat16: "
        + {True: "yes", False: "no (bfloat16 is emulated: expect it slower than float32)", None: "unknown"}[
            env.get("native_bf16")
        ],
        f"corpus: {results['corpus']['rows']} rows, {results['corpus']['tokens']} tokens "
        f"(p50 {results['corpus']['token_percentiles']['p50']}, p90 {results['corpus']['token_percentiles']['p90']}, "
        f"p99 {results['corpus']['token_percentiles']['p99']}); model {results['corpus']['model']['name']}",
        "matmul peak: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in results["peak_gflops"].items()),
        "",
    ]
    lines += _table(results["cases"])
    if results.get("large"):
        lg = results["large"]
        lines += [
            "",
            f"large: Qwen3-Embedding-0.6B architecture, random weights, {lg['layers']} layers, "
            f"{lg['rows']} rows, {lg['tokens']} tokens (throughput only)",
        ]
        lines += _table(lg["cases"])
        lines += [
            "  cosine to plain f32: "
            + ", ".join(f"{k} min {v['min']:.5f}" for k, v in lg["cosine_to_plain_f32"].items())
        ]
    q = results.get("cosine_to_plain_f32", {})
    if q:
        lines += [
            "",
            "per-row cosine to plain float32: " + ", ".join(f"{k} min {v['min']:.6f}" for k, v in q.items()),
        ]
    if results.get("sts_spearman_x100"):
        lines += [
            "STS Benchmark Spearman x100: "
            + ", ".join(f"{k} {v:.2f}" for k, v in results["sts_spearman_x100"].items())
        ]
    lines += [
        "",
        "targets:"
        + (
            " (a --quick run: fixed process costs dominate; judge on the full bench)"
            if results["args"].get("quick")
            else ""
        ),
    ]
    for t in results["targets"]:
        val = t["value"]
        val_s = f"{val:.6f}" if isinstance(val, float) and val < 1.0 and val > 0.99 else _fmt(val)
        lines.append(
            f"  [{'met' if t['met'] else 'NOT MET'}] {t['target']}: {val_s} (goal {t['goal']}){' - ' + t['note'] if t['note'] else ''}"
        )
    return "\n".join(lines)


def _table(cases: dict) -> list[str]:
    lines = [
        "| case | dtype | wall s | rows/s | tokens/s | x plain (process) | encode s | x plain (encode) "
        "| % peak (encode) | pad eff | other CPU % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k, r in cases.items():
        foreign = r.get("foreign_cpu")
        lines.append(
            f"| {k} | {r['dtype']} | {r['wall_s']:.1f} | {r['rows_per_s']:.1f} | {r['tokens_per_s']:.0f} | "
            f"{_fmt(r.get('x_plain_wall'))} | {r['encode_s']:.1f} | {_fmt(r.get('x_plain_encode'))} | "
            f"{_fmt(r.get('pct_peak_encode'), '{:.1f}')} | {_fmt(r.get('padding_efficiency'), '{:.3f}')} | "
            f"{_fmt(None if foreign is None else 100 * foreign, '{:.0f}')} |"
        )
    return lines


def append_history(results: dict, out: Path) -> None:
    """One line per full bench run in RESULTS.md's history table."""
    c = results["cases"]
    env = results["env"]

    def x(key, field="x_plain_wall"):
        return _fmt(c.get(key, {}).get(field))

    sts = results.get("sts_spearman_x100", {})
    pool = (
        _fmt(c["pool-1x2-chatspace"]["wall_s"] / c["pool-2x1-chatspace"]["wall_s"])
        if "pool-2x1-chatspace" in c and "pool-1x2-chatspace" in c
        else "-"
    )
    line = (
        f"| {env['date'][:10]} | {env['host']} | {env.get('gpu') or env['cpu']} x{env['cores']} | {env.get('git')} | "
        f"{results['corpus']['rows']} | {_fmt(c.get('plain-f32', {}).get('rows_per_s'), '{:.1f}')} | "
        f"{x('chatspace-f32')} | {x('chatspace-bf16')} | {pool} | {_fmt(sts.get('chatspace-bfloat16'))} | "
        f"{os.path.relpath(out, HERE)} |"
    )
    header = (
        "| date | host | device | git | rows | plain f32 rows/s | f32 x plain | bf16 x plain | 2x1 / 1x2 pool | "
        "STS bf16 | results |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|---|\n"
    )
    text = RESULTS_MD.read_text() if RESULTS_MD.is_file() else "# Benchmark results\n"
    marker = "## History"
    if marker not in text:
        text = (
            text.rstrip("\n")
            + f"\n\n{marker}\n\nOne line per full `make bench` run (appended by bench.py).\n\n{header}"
        )
    text = text.rstrip("\n") + "\n" + line + "\n"
    RESULTS_MD.write_text(text)
    log(f"history line appended to {RESULTS_MD}")
