"""
recbole_derrd.benchmark.speed_report
####################################
The speed benchmark's report, ``results/speed.md``, rebuilt from every ``results/speed/*.json``
(one section per device that ran the benchmark) and the whole runs of
``results/speed/wholerun/``.
"""

import json
import os
import statistics

from recbole_derrd.benchmark import RESULTS


def epoch_lines(report):
    """One training epoch of each variant against the student alone."""
    lines = ["### One training epoch, relative to the student trained alone", "",
             "| data | how | batches | student | DE | RRD | DE-RRD | resampling (DE-RRD) |",
             "|---|---|---|---|---|---|---|---|"]
    for entry in report["epoch"]:
        v = entry["variants"]
        lines.append(
            f"| {entry['dataset']} ({entry['interactions']:,} train) | {entry['method']} | "
            f"{entry['batches_per_epoch']:,} x {entry['batch_size']} | "
            f"{v['student']['epoch_s']:.2f} s | "
            + " | ".join(f"{v[name]['epoch_s']:.2f} s ({v[name]['ratio']:.2f}x)"
                         for name in ("DE", "RRD", "DE-RRD"))
            + f" | {v['DE-RRD']['resample_s']:.3f} s |")
    lines.append("")
    return lines


def topn_lines(report):
    """The teacher's top-N of every user: time and memory."""
    lines = ["### Teacher top-500 of every user (chunked, 200-d BPR teacher)", "",
             "| scale | users x items | chunk (users) | time | peak resident memory during the top-N | resident before (split, teacher) | result tensor |",
             "|---|---|---|---|---|---|---|"]
    for entry in report["topn"]:
        gpu = f", GPU peak {entry['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in entry else ""
        lines.append(
            f"| {entry['scale']} | {entry['users']:,} x {entry['items']:,} | "
            f"{entry['chunk_users']} | {entry['seconds']:.1f} s | "
            f"{entry['peak_rss_mb']:.0f} MB{gpu} | {entry['rss_before_topn_mb']:.0f} MB | "
            f"{entry['result_mb']:.0f} MB |")
    lines.append("")
    return lines


def sampling_lines(report):
    """One epoch of RRD's sampling for all users."""
    lines = ["### One epoch of RRD sampling for all users (K = L = 40, N = 500)", "",
             "| scale | users x items | sampler build (once) | interesting | uninteresting | excluded pairs held |",
             "|---|---|---|---|---|---|"]
    for entry in report["sampling"]:
        lines.append(
            f"| {entry['scale']} | {entry['users']:,} x {entry['items']:,} | "
            f"{entry['sampler_build_s']:.2f} s | {entry['interesting_s']:.3f} s | "
            f"{entry['uninteresting_s']:.3f} s | {entry['excluded_pairs']:,} |")
    lines.append("")
    return lines


def inference_lines(report):
    """Full-sort inference, student against teacher."""
    lines = ["### Full-sort inference of all users: student (d = 20) vs teacher (d = 200)", "",
             "| scale | student scoring | student top-20 | teacher scoring | teacher top-20 | speed-up (scoring) | speed-up (total) |",
             "|---|---|---|---|---|---|---|"]
    for entry in report["inference"]:
        s, t = entry["student"], entry["teacher"]
        lines.append(
            f"| {entry['scale']} ({entry['users']:,} x {entry['items']:,}) | "
            f"{s['scoring_s']:.3f} s | {s['topk_s']:.3f} s | {t['scoring_s']:.3f} s | "
            f"{t['topk_s']:.3f} s | {entry['speedup_scoring']:.1f}x | {entry['speedup_total']:.1f}x |")
    lines.append("")
    return lines


def routing_lines(report):
    """DE's mixture, dense against sparse."""
    routing = report["routing"]
    lines = [f"### DE mixture, dense vs sparse (forward + backward, {routing['entities']:,} entities, "
             f"M = {routing['num_experts']})", "",
             "`de_routing: auto` goes sparse when the padded work is at most "
             f"{routing['sparse_work_fraction']:.0%} of the dense work.", "",
             "| experts per entity | rows per tile | padded work / dense work | dense | sparse | sparse / dense |",
             "|---|---|---|---|---|---|"]
    for entry in routing["entries"]:
        lines.append(f"| {entry['active_experts']} | {entry['tile_rows']} | {entry['padded_work_fraction']:.2f} | "
                     f"{entry['dense_s'] * 1000:.1f} ms | {entry['sparse_s'] * 1000:.1f} ms | "
                     f"{entry['sparse_over_dense']:.2f} |")
    lines.append("")
    return lines


def htd_lines(report):
    """HTD's within-group level, fused against autograd."""
    lines = ["### HTD: the within-group level, fused against autograd (forward + backward)", "",
             "One-hot assignment to K = 30 groups, 200-d teacher space; medians, the two "
             "computations in alternating turns. Side step: one side's whole HTD term "
             "(selection, mappings with `htd_weight_floor` 1e-3, the three levels), early and "
             "after annealing, with the fused level (the plugin's) and with autograd's.", "",
             "| entities | level: autograd | level: fused | speed-up | side step, tau = 1: autograd / fused "
             "| side step, tau = 0.07: autograd / fused |",
             "|---|---|---|---|---|---|"]
    for entry in report["htd"]["entries"]:
        sides = " | ".join(
            f"{entry[f'side_step_tau{tau}_autograd_s'] * 1000:.1f} / {entry[f'side_step_tau{tau}_s'] * 1000:.1f} ms "
            f"({entry[f'side_step_tau{tau}_autograd_s'] / entry[f'side_step_tau{tau}_s']:.2f}x)"
            for tau in ("1", "0.07"))
        lines.append(f"| {entry['entities']:,} | {entry['within_autograd_s'] * 1000:.1f} ms | "
                     f"{entry['within_fused_s'] * 1000:.1f} ms | {entry['within_speedup']:.2f}x | {sides} |")
    lines.append("")
    return lines


def profile_lines(report):
    """Where an annealed-phase DE-RRD step goes."""
    profile = report["profile"]
    lines = [f"### Where an annealed-phase DE-RRD step goes (ml-100k, epoch {profile['epoch']}, "
             f"tau = {profile['tau']:.2g}, {profile['active_experts']:.2f} experts per entity"
             + (", the whole run's trained model" if profile["trained_model"] else ", untrained")
             + ")", "",
             f"Median over {profile['steps']} batches of 2,048 interactions.", "",
             "| part | ms per step |", "|---|---|"]
    lines += [f"| {name} | {value:.1f} |" for name, value in profile["ms"].items()]
    lines.append("")
    return lines


#: The sections of a device's report, in order: part -> its lines.
PARTS = {"epoch": epoch_lines, "topn": topn_lines, "sampling": sampling_lines, "inference": inference_lines,
         "routing": routing_lines, "htd": htd_lines, "profile": profile_lines}


def write_markdown():
    """Rebuild results/speed.md from every results/speed/*.json."""
    folder = os.path.join(RESULTS, "speed")
    reports = [json.load(open(os.path.join(folder, name))) for name in sorted(os.listdir(folder))
               if name.endswith(".json")]
    lines = ["# Speed and memory", "",
             "Written by `python run_scripts/bench_speed.py` (see its docstring for what each part",
             "measures). Medians; ratios are measured side by side in one process. One section per",
             "device that ran the script.", ""]
    for report in reports:
        info = report["machine"]
        where = info.get("gpu") or f"{info['cpu']}, {info['cores']} cores, {info['threads']} torch threads"
        lines += [f"## {info['device']}: {where}", "",
                  f"torch {info['torch']}, Python {info['python']}, {report['date']}. Commands: "
                  + "; ".join(f"`{command}`" for command in report.get("commands") or [report["command"]]), ""]
        if report.get("notes"):
            lines += [report["notes"], ""]
        for part in PARTS:
            if report.get(part):
                lines += PARTS[part](report)
    lines += wholerun_markdown(os.path.join(folder, "wholerun"))
    with open(os.path.join(RESULTS, "speed.md"), "w") as handle:
        handle.write("\n".join(lines))


def wholerun_markdown(folder):
    """The whole-run section of results/speed.md: one row per dataset and device."""
    if not os.path.isdir(folder):
        return []
    reports = [json.load(open(os.path.join(folder, name))) for name in sorted(os.listdir(folder))
               if name.endswith(".json")]
    if not reports:
        return []
    columns = ["student", "RRD", "DE", "DE-RRD", "DE-RRD floor=0", "DE-RRD paper.yaml"]
    lines = ["## Whole training runs to early stop, relative to the student trained alone", "",
             "Total training time of each run (every epoch and its validation: what `fit` takes), "
             "and its ratio to the student alone's; epochs trained in brackets. Each run in a fresh "
             "process, one after the other. DE-RRD uses the defaults (`de_weight_floor: 1e-3`, "
             "`de_routing: auto`); `floor=0` is the exact dense computation; `paper.yaml` is the "
             "paper's schedule (sums, batch 1024, P = 1000), its first epochs only. "
             "Per-epoch figures and plots: `results/speed/wholerun/`.", "",
             "| data | device | " + " | ".join(columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for report in reports:
        runs, info = report["runs"], report["machine"]
        flags = ", ".join(info.get("cpu_flags", [])) or "none of avx512f / amx"
        device = info.get("gpu") or f"{info['cpu']} ({flags}), {info['threads']} torch thread(s)"
        student = runs.get("student")
        cells = []
        for name in columns:
            run = runs.get(name)
            if run is None or student is None:
                # a run stopped before its early stop (e.g. out of a lent GPU's time) says so
                cells.append(report.get("unfinished", {}).get(name, "not run"))
                continue
            cells.append(f"{run['fit_s']:.0f} s ({run['fit_s'] / student['fit_s']:.1f}x) "
                         f"[{len(run['epoch_s'])}]")
        lines.append(f"| {report['dataset']} | {device} | " + " | ".join(cells) + " |")
    lines.append("")
    for report in reports:
        runs = report["runs"]
        first = {name: run["epoch_s"][0] for name, run in runs.items() if run["epoch_s"]}
        lines += [f"### {report['dataset']}, {report['machine'].get('gpu') or report['machine']['cpu']}: every run", "",
                  "| run | epochs | total | ratio to student | epoch 0 | slowest epoch / epoch 0 | median epoch | experts per entity, last epoch | test NDCG@10 | test Recall@10 |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        if report.get("notes"):
            lines[-2:-2] = [report["notes"], ""]
        for name, run in runs.items():
            ratio = run["fit_s"] / runs["student"]["fit_s"] if "student" in runs else float("nan")
            experts = run["diagnostics"][-1].get("active_experts") if run["diagnostics"] else None
            lines.append(
                f"| {name} | {len(run['epoch_s'])} | {run['fit_s']:.1f} s | {ratio:.2f}x | "
                f"{first[name]:.2f} s | {max(run['epoch_s']) / first[name]:.2f} | "
                f"{statistics.median(run['epoch_s']):.2f} s | "
                f"{'' if experts is None else format(experts, '.2f')} | "
                f"{run['test'].get('ndcg@10', float('nan')):.4f} | {run['test'].get('recall@10', float('nan')):.4f} |")
        lines.append("")
    return lines
