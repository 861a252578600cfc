"""`bench.py --case backends`: the transformer's runtime on the CPU. chatspace embed-hf end to end with
`--backend torch` (float32, the baseline), `onnx` and `openvino` (float32), and the labelled variants
`--backend onnx --quantize int8` and `--backend openvino --dtype bfloat16` (beside torch's own
`--dtype bfloat16`, for what the backend adds over it); plain `SentenceTransformer.encode` float32 is the
reference for the vectors.

Every case is a whole process on the same rows and buckets. The ONNX export is made once beforehand
(its time is reported) and copied into each run's output root, as a user's later runs find it in
`cache/onnx/`. Quality: per-row cosine to plain float32 and STS Benchmark Spearman x 100 through the
whole pipeline. Goal (#15): a backend >= 1.3x torch float32 end to end with per-row cosine >= 0.999;
the verdict is printed for the float32 backends alone and for any precision.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import corpus as corpus_mod
from harness import (
    Bench,
    compare,
    finish_standalone,
    log,
    read_chatspace_vectors,
    read_plain_vectors,
    standalone,
)
from quality import sts_dataset, sts_score

GOAL_SPEEDUP, GOAL_COSINE = 1.3, 0.999
# (case, chatspace options, label); the first is the baseline.
VARIANTS = (
    ("torch-f32", ["--backend", "torch", "--dtype", "float32"], "torch float32 (baseline)"),
    ("onnx-f32", ["--backend", "onnx"], "ONNX Runtime float32"),
    ("openvino-f32", ["--backend", "openvino"], "OpenVINO float32"),
    (
        "onnx-int8",
        ["--backend", "onnx", "--quantize", "int8"],
        "ONNX Runtime int8 (quantized: other vectors)",
    ),
    ("openvino-bf16", ["--backend", "openvino", "--dtype", "bfloat16"], "OpenVINO bfloat16 (other vectors)"),
    # torch's own bfloat16, for what a backend adds over `--dtype bfloat16`; not a backend of the goal
    (
        "torch-bf16",
        ["--backend", "torch", "--dtype", "bfloat16"],
        "torch bfloat16 (reference: other vectors)",
    ),
)


def main(args) -> int:
    rows = args.rows or (400 if args.quick else 3000)
    env_info, bench, model, model_path, data = standalone(args, rows, "chatspace-backends-")
    cores, work = env_info["cores"], bench.work
    results: dict = {"env": env_info, "rows": rows, "model": model}
    try:
        seed = export_once(bench, data, model, results)
        for _ in range(1 if args.quick else args.repeats):
            bench.case(
                "plain-f32", bench.plain, data, model_path, device="cpu", dtype="float32", threads=cores
            )
            for key, options, _ in VARIANTS:
                bench.case(
                    key,
                    bench.chatspace,
                    data,
                    model,
                    devices="cpu",
                    extra=options,
                    rows_per_shard=None,
                    seed_cache=seed,
                )
        ref = bench.cases["plain-f32"]
        results["cases"] = {
            key: {
                "wall_s": c["wall_s"],
                "all_walls_s": c["all_walls_s"],
                "encode_s": c["encode_s"],
                "rows": c["rows"],
                "foreign_cpu": c.get("foreign_cpu"),
                "cosine_to_plain_f32": compare(ref, c) if key != "plain-f32" else None,
            }
            for key, c in bench.cases.items()
        }
        if not args.skip_sts and args.sts.is_file():
            results["sts_spearman_x100"] = sts_scores(bench, args.sts, work, model, model_path, seed)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    finish_standalone(bench, results, render(results, cores), "backends", args.out)
    return 0


def export_once(bench: Bench, data: Path, model: str, results: dict) -> Path:
    """Make the ONNX export (and its int8 variant) with a short run; returns the cache to seed runs with."""
    first = corpus_mod.build_corpus(16)
    for name, extra in (
        ("export", ["--backend", "onnx"]),
        ("export-int8", ["--backend", "onnx", "--quantize", "int8"]),
    ):
        c = bench.chatspace(name, first, model, devices="cpu", extra=extra, rows_per_shard=None)
        results[f"{name}_seconds"] = c["wall_s"]
        if name == "export":
            seed = Path(c["out"]) / "cache"
        else:
            shutil.copytree(Path(c["out"]) / "cache", seed, dirs_exist_ok=True)
    log(
        f"ONNX export: {results['export_seconds']:.1f} s for the first run (int8: {results['export-int8_seconds']:.1f} s)"
    )
    return seed


def sts_scores(bench: Bench, sts_path: Path, work: Path, model: str, model_path: str, seed: Path) -> dict:
    sts_data, pairs = sts_dataset(sts_path, work)
    c = bench.plain("sts-plain-f32", sts_data, model_path, device="cpu", dtype="float32", threads=None)
    scores = {"plain-f32": sts_score(read_plain_vectors(c["out"]), pairs)}
    for key, options, _ in VARIANTS:
        c = bench.chatspace(
            f"sts-{key}",
            sts_data,
            model,
            devices="cpu",
            extra=options,
            rows_per_shard=10_000,
            seed_cache=seed,
        )
        scores[key] = sts_score(read_chatspace_vectors(c["out"]), pairs)
    log("STS: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    return {k: round(v, 2) for k, v in scores.items()}


def render(results: dict, cores: int) -> str:
    env, cases = results["env"], results["cases"]
    sts = results.get("sts_spearman_x100", {})
    base = cases["torch-f32"]
    lines = [
        f"backends bench - {env['date']} - {env['cpu']} ({', '.join(env['cpu_flags'])}), {cores} cores; "
        f"git {env['git']}; load before {env['load_before']}",
        f"{results['rows']} rows of the bench corpus, model {results['model']}; ONNX export once: "
        f"{results['export_seconds']:.1f} s (a first run, whole process)",
        "",
        "| case | wall s | x torch f32 (process) | encode s | x torch f32 (encode) | cosine to ST f32 (min) | STS x100 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {"plain-f32": "SentenceTransformer.encode float32", **{k: label for k, _, label in VARIANTS}}
    for key, c in cases.items():
        cos = c["cosine_to_plain_f32"]
        lines.append(
            f"| {labels[key]} | {c['wall_s']:.1f} | {base['wall_s'] / c['wall_s']:.2f} | {c['encode_s']:.1f} | "
            f"{base['encode_s'] / c['encode_s']:.2f} | {'-' if cos is None else format(cos['min'], '.6f')} | "
            f"{sts.get(key, '-')} |"
        )
    lines.append("")
    for title, keys in (
        ("best float32 backend", ("onnx-f32", "openvino-f32")),
        (
            "best backend with cosine >= 0.999 (any precision)",
            tuple(k for k, _, _ in VARIANTS if not k.startswith("torch-")),
        ),
    ):
        lines.append(verdict(title, cases, base, keys))
    return "\n".join(lines)


def verdict(title: str, cases: dict, base: dict, keys: tuple[str, ...]) -> str:
    """The goal's line for the fastest of `keys` whose vectors stay within the cosine goal."""
    close = [k for k in keys if k in cases and cases[k]["cosine_to_plain_f32"]["min"] >= GOAL_COSINE]
    if not close:
        return f"[NOT MET] {title}: none keeps cosine >= {GOAL_COSINE}"
    best = max(close, key=lambda k: base["wall_s"] / cases[k]["wall_s"])
    speedup = base["wall_s"] / cases[best]["wall_s"]
    cos = cases[best]["cosine_to_plain_f32"]["min"]
    return (
        f"[{'met' if speedup >= GOAL_SPEEDUP else 'NOT MET'}] {title} ({best}) vs torch float32, whole "
        f"process: {speedup:.2f}x (goal >= {GOAL_SPEEDUP}x), cosine min {cos:.6f} (goal >= {GOAL_COSINE})"
    )
