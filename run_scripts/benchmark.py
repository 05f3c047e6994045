"""What distillation buys over training the small model alone, on RecBole's splits and evaluators:

    python run_scripts/benchmark.py --dataset=ml-100k --backbone=BPR --protocol=recbole
    python run_scripts/benchmark.py --dataset=ml-100k --backbone=LightGCN --protocol=paper --seeds=3
    python run_scripts/benchmark.py --dataset=ml-1m --backbone=BPR --sizes=10,20,50   # downloads ml-1m

For each seed (a seed is a RecBole split and initialisation) it trains and tests the teacher
(``--teacher_size``), then at each student size: the student alone (the same backbone, small),
RD, CD, DE, RRD and DE-RRD, all distilled from that teacher with the plugin's defaults. It records
test metrics, inference parameters, full-sort inference time for all users (median of repeats,
all models of a seed timed side by side in one process), training time per epoch and the
student/teacher ratio of the main metric, then writes ``results/<dataset>/<backbone>-<protocol>``
``.md`` / ``.csv`` / ``.png`` (mean and standard deviation over seeds). Finished cells are kept in
``...-<protocol>.cells.json``: an interrupted benchmark resumes where it stopped.
"""

import argparse
import csv
import json
import os
import statistics
import sys
import time

import torch
from tqdm import tqdm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ["teacher", "student", "RD", "CD", "DE", "RRD", "DE-RRD"]
#: (model, extra keys) of every student method; the backbone and size are added per cell.
DISTILLERS = {
    "RD": ("RD", {}),
    "CD": ("CD", {}),
    "DE": ("DERRD", {"use_rrd": False}),
    "RRD": ("DERRD", {"use_de": False}),
    "DE-RRD": ("DERRD", {}),
}
PROTOCOLS = {
    "recbole": "properties/experiments/protocol_recbole.yaml",
    "paper": "properties/experiments/protocol_paper.yaml",
}


def format_value(value, spec, prefix=""):
    """``value`` formatted, or nothing where it was not measured (a spread over one seed)."""
    return "" if value is None else prefix + format(value, spec)


def timing_context(gpu_id):
    """What the times of a cell were measured on: the device and torch's CPU threads."""
    from recbole_derrd.utils import machine_info

    info = machine_info("cuda" if gpu_id != "" and torch.cuda.is_available() else "cpu")
    return f"{info.get('gpu', info['cpu'])}, {info['threads']} torch thread(s)"


def cell_key(method, size, seed):
    return f"{method}|{size}|{seed}"


class Benchmark:
    """The cells of one (dataset, backbone, protocol) benchmark, persisted as JSON."""

    def __init__(self, args):
        from recbole_derrd.teacher import size_parameters

        self.args = args
        self.size_parameters = size_parameters
        self.name = f"{args.backbone}-{args.protocol}"
        self.folder = os.path.join(args.results, args.dataset)
        self.cells_file = os.path.join(self.folder, f"{self.name}.cells.json")
        self.work = os.path.join(args.work, args.dataset, self.name)
        os.makedirs(self.folder, exist_ok=True)
        self.cells = {}
        if os.path.isfile(self.cells_file):
            with open(self.cells_file) as handle:
                self.cells = json.load(handle)

    def save(self):
        temporary = self.cells_file + ".tmp"
        with open(temporary, "w") as handle:
            json.dump(self.cells, handle, indent=1, sort_keys=True)
        os.replace(temporary, self.cells_file)

    def config_files(self):
        return [os.path.join(REPO, PROTOCOLS[self.args.protocol])] + self.args.config_files

    def base_config(self, seed):
        config = {
            "seed": seed,
            "checkpoint_dir": os.path.join(self.work, f"seed{seed}"),
            "show_progress": False,
            "state": "ERROR",
            "gpu_id": self.args.gpu_id,
        }
        if self.args.epochs:
            config["epochs"] = self.args.epochs
        if self.args.data_path:
            config["data_path"] = self.args.data_path
        return config

    def cell_plan(self, seed, size):
        """(method, model name, config) of every cell of a seed and size."""
        backbone = self.args.backbone
        student_size = self.size_parameters(backbone, size)
        teacher = self.cells.get(cell_key("teacher", self.args.teacher_size, seed), {})
        plan = [("student", backbone, dict(student_size))]
        for method in self.args.methods:
            if method in DISTILLERS:
                model, extra = DISTILLERS[method]
                plan.append((method, model, dict(extra, student_model=backbone, **student_size,
                                                 teacher_checkpoint=teacher.get("checkpoint"))))
        return [cell for cell in plan if cell[0] in self.args.methods]

    def run_cell(self, method, model, parameters, seed, size):
        from recbole_derrd import run_recbole_derrd

        config = dict(self.base_config(seed), **parameters)
        start = time.time()
        result = run_recbole_derrd(model, self.args.dataset, self.config_files(), config)
        epoch_seconds = result["train_epoch_seconds"]
        return {
            "method": method, "model": model, "size": size, "seed": seed,
            "test": dict(result["test_result"]),
            "valid": dict(result["best_valid_result"] or {}),
            "parameters": result["parameters"],
            "epochs": len(epoch_seconds),
            "train_seconds_per_epoch": statistics.median(epoch_seconds) if epoch_seconds else None,
            "wall_seconds": time.time() - start,
            "checkpoint": result["checkpoint"],
            "timing": timing_context(config.get("gpu_id")),
            "config": {key: value for key, value in parameters.items() if key != "teacher_checkpoint"},
        }

    def run(self):
        sizes, seeds = self.args.sizes, self.args.seed_values
        todo = []
        for seed in seeds:
            todo.append(("teacher", self.args.teacher_size, seed))
            for size in sizes:
                todo += [(method, size, seed) for method in self.args.methods if method != "teacher"]
        progress = tqdm(todo, desc=self.name, ncols=100)
        for method, size, seed in progress:
            key = cell_key(method, size, seed)
            if key in self.cells and self.checkpoint_usable(key, method):
                continue
            progress.set_postfix_str(f"{method} d={size} seed={seed}")
            if method == "teacher":
                parameters = self.size_parameters(self.args.backbone, size)
                self.cells[key] = self.run_cell("teacher", self.args.backbone, parameters, seed, size)
            else:
                plan = {cell[0]: cell for cell in self.cell_plan(seed, size)}
                _, model, parameters = plan[method]
                self.cells[key] = self.run_cell(method, model, parameters, seed, size)
            self.save()
            tqdm.write(f"{key}: {self.args.metric} = {self.cells[key]['test'][self.args.metric]:.4f}")
        for seed in seeds:
            self.time_inference(seed)
        self.save()

    def checkpoint_usable(self, key, method):
        """A finished cell is kept; a teacher must also still have its checkpoint when some
        distiller of its seed has yet to run."""
        if method != "teacher":
            return True
        seed = self.cells[key]["seed"]
        pending = any(cell_key(m, s, seed) not in self.cells for m in DISTILLERS
                      for s in self.args.sizes if m in self.args.methods)
        return not pending or os.path.isfile(self.cells[key]["checkpoint"] or "")

    def time_inference(self, seed):
        """Full-sort inference (scores of all items, then the top-k) for all users, every model
        of the seed side by side in this process: median over repeats."""
        from recbole.utils import init_seed

        from recbole_derrd import Config
        from recbole_derrd.checkpoint import read_checkpoint
        from recbole_derrd.data import create_dataset, data_preparation
        from recbole_derrd.model.backbones import backbone_of
        from recbole_derrd.utils import get_model

        keys = [key for key, cell in self.cells.items() if cell["seed"] == seed
                and "inference_seconds" not in cell and os.path.isfile(cell.get("checkpoint") or "")]
        if not keys:
            return
        backbone = self.args.backbone
        config = Config(backbone, self.args.dataset, self.config_files(),
                        self.base_config(seed), parse_command_line=False)
        init_seed(config["seed"], config["reproducibility"])
        train_data = data_preparation(config, create_dataset(config))[0]
        users = torch.arange(1, train_data.dataset.user_num, device=config["device"])
        models = {}
        for key in keys:
            checkpoint = read_checkpoint(self.cells[key]["checkpoint"], map_location=config["device"])
            state = {name[len("student."):]: value for name, value in checkpoint["state_dict"].items()
                     if name.startswith("student.")} or checkpoint["state_dict"]
            model_config = Config(backbone, self.args.dataset, self.config_files(),
                                  dict(self.base_config(seed), **self.cells[key]["config"]),
                                  parse_command_line=False)
            model = get_model(backbone)(model_config, train_data.dataset).to(config["device"]).eval()
            model.load_state_dict(state)
            models[key] = model
        k = max(config["topk"])
        chunk = max(1, config["eval_batch_size"] // train_data.dataset.item_num)
        times = {key: [] for key in models}
        with torch.no_grad():
            for _ in range(self.args.inference_repeats):
                for key, model in models.items():  # interleaved
                    scorer = backbone_of(model)
                    start = time.perf_counter()
                    for first in range(0, len(users), chunk):
                        scorer.score_users(users[first:first + chunk]).topk(k, dim=1)
                    if config["device"].type == "cuda":
                        torch.cuda.synchronize()
                    times[key].append(time.perf_counter() - start)
        for key, values in times.items():
            self.cells[key]["inference_seconds"] = statistics.median(values)

    # ------------------------------------------------------------------ report

    def summary(self):
        """{(method, size): {metric: (mean, std), ...}} over seeds."""
        rows = {}
        for cell in self.cells.values():
            if cell["seed"] not in self.args.seed_values:
                continue
            rows.setdefault((cell["method"], cell["size"]), []).append(cell)
        summary = {}
        for (method, size), cells in rows.items():
            entry = {"seeds": len(cells)}
            for metric in cells[0]["test"]:
                values = [cell["test"][metric] for cell in cells]
                # one seed measures no spread: None, not a zero standard deviation
                entry[metric] = (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None)
            for field in ("parameters", "inference_seconds", "train_seconds_per_epoch", "epochs"):
                values = [cell[field] for cell in cells if cell.get(field) is not None]
                entry[field] = statistics.mean(values) if values else None
            summary[(method, size)] = entry
        return summary

    def write_reports(self):
        summary = self.summary()
        if not summary:
            return
        metric = self.args.metric
        teacher = summary.get(("teacher", self.args.teacher_size))
        metrics = sorted({m for entry in summary.values() for m in entry if "@" in m},
                         key=lambda m: (m.split("@")[0], int(m.split("@")[1])))
        order = {method: index for index, method in enumerate(METHODS)}
        keys = sorted(summary, key=lambda item: (item[0] != "teacher", item[1], order[item[0]]))
        path = os.path.join(self.folder, self.name)
        with open(path + ".csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["method", "size", "seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
                            + ["parameters", "inference_seconds", "train_seconds_per_epoch", "epochs",
                               f"{metric}_ratio_to_teacher"])
            for method, size in keys:
                entry = summary[(method, size)]
                ratio = entry[metric][0] / teacher[metric][0] if teacher else None
                writer.writerow([method, size, entry["seeds"]]
                                + [format_value(entry[m][i], ".5f") for m in metrics for i in (0, 1)]
                                + [entry["parameters"], entry["inference_seconds"],
                                   entry["train_seconds_per_epoch"], entry["epochs"], ratio])
        self.write_markdown(path + ".md", summary, keys, metrics, teacher)
        self.plot(path + ".png", summary, teacher)

    def write_markdown(self, path, summary, keys, metrics, teacher):
        metric, args = self.args.metric, self.args
        shown = [m for m in metrics if m.split("@")[1] in ("5", "10", "20")]
        lines = [f"# {args.dataset}, {args.backbone} backbone, {args.protocol} protocol", "",
                 f"Command: `python run_scripts/benchmark.py --dataset={args.dataset} "
                 f"--backbone={args.backbone} --protocol={args.protocol} --sizes={args.sizes_text} "
                 f"--seeds={len(args.seed_values)}{self.extra_arguments()}`; protocol "
                 f"`{PROTOCOLS[args.protocol]}`. "
                 + (f"Test metrics, mean ± standard deviation over seeds {args.seed_values} (each seed "
                    "is its own split, teacher and students). " if len(args.seed_values) > 1 else
                    f"Test metrics of one seed ({args.seed_values[0]}): no spread over seeds was "
                    "measured, so differences of about 0.01 may be training noise. ")
                 + f"Times measured on: {self.timing_text()}. "
                 + "Students use the plugin's default "
                 "hyperparameters. Inference: full-sort scoring and top-k (the protocol's largest k) of all users, "
                 f"median of {args.inference_repeats} repeats measured side by side; training time "
                 "per epoch excludes evaluation.", "",
                 "| method | size | " + " | ".join(shown) + " | params | inference | s/epoch | epochs | "
                 f"{metric} vs teacher | {metric} vs student |",
                 "|---|---|" + "---|" * len(shown) + "---|---|---|---|---|---|"]
        for method, size in keys:
            entry = summary[(method, size)]
            student = summary.get(("student", size))
            vs_teacher = f"{entry[metric][0] / teacher[metric][0]:.3f}" if teacher else "-"
            vs_student = (f"{100 * (entry[metric][0] / student[metric][0] - 1):+.1f}%"
                          if student and method not in ("teacher", "student") else "")
            inference = f"{1000 * entry['inference_seconds']:.1f} ms" if entry["inference_seconds"] else "-"
            per_epoch = f"{entry['train_seconds_per_epoch']:.2f}" if entry["train_seconds_per_epoch"] else "-"
            lines.append(
                f"| {method} | {size} | "
                + " | ".join(format_value(entry[m][0], ".4f") + format_value(entry[m][1], ".4f", prefix=" ± ")
                             for m in shown)
                + f" | {entry['parameters']:,.0f} | {inference} | {per_epoch} | {entry['epochs']:.0f} | "
                f"{vs_teacher} | {vs_student} |")
        lines.append("")
        with open(path, "w") as handle:
            handle.write("\n".join(lines))

    def timing_text(self):
        """What the reported cells' times were measured on (older cells did not record it)."""
        contexts = {cell.get("timing", "not recorded") for cell in self.cells.values()
                    if cell["seed"] in self.args.seed_values}
        return "; ".join(sorted(contexts))

    def extra_arguments(self):
        """The command-line options that changed what was run, for the report's command."""
        args, extra = self.args, []
        if args.methods != METHODS:
            extra.append(f"--methods={','.join(args.methods)}")
        if args.teacher_size != 200:
            extra.append(f"--teacher_size={args.teacher_size}")
        if args.epochs is not None:
            extra.append(f"--epochs={args.epochs}")
        if args.config_files:
            extra.append(f"--config_files=\"{' '.join(args.config_files)}\"")
        return "".join(f" {option}" for option in extra)

    def plot(self, path, summary, teacher):
        """Two panels: test quality against student size, and against full-sort inference time
        (the teacher a point there, a dashed line on the left)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker

        metric = self.args.metric
        figure, (by_size, by_time) = plt.subplots(1, 2, figsize=(11, 4.5))
        sizes = sorted({size for method, size in summary if method != "teacher"})
        markers = dict(zip(METHODS[1:], "osv^<>D"))
        for offset, method in enumerate(METHODS[1:]):
            points = [(size, summary[(method, size)]) for size in sizes if (method, size) in summary]
            if not points:
                continue
            style = dict(marker=markers[method], capsize=3, label=method,
                         linewidth=2.5 if method in ("student", "DE-RRD") else 1,
                         color="black" if method == "student" else None)
            means = [entry[metric][0] for _, entry in points]
            spreads = [entry[metric][1] or 0.0 for _, entry in points]
            xs = [size * (1 + 0.015 * (offset - 3)) for size, _ in points]  # spread the markers
            line = by_size.errorbar(xs, means, yerr=spreads, **style)
            timed = [(1000 * entry["inference_seconds"], mean, spread)
                     for (_, entry), mean, spread in zip(points, means, spreads) if entry["inference_seconds"]]
            if timed:
                milliseconds, timed_means, timed_spreads = zip(*timed)
                by_time.errorbar(milliseconds, timed_means, yerr=timed_spreads, color=line[0].get_color(),
                                 **{key: value for key, value in style.items() if key != "color"})
        if teacher:
            spread = teacher[metric][1] or 0.0
            label = f"teacher (d={self.args.teacher_size})"
            by_size.axhline(teacher[metric][0], color="gray", linestyle="--", label=label)
            by_size.axhspan(teacher[metric][0] - spread, teacher[metric][0] + spread, color="gray", alpha=0.15)
            if teacher["inference_seconds"]:
                by_time.errorbar([1000 * teacher["inference_seconds"]], [teacher[metric][0]], yerr=[spread],
                                 marker="*", markersize=12, color="gray", linestyle="none", label=label)
        by_size.set_xscale("log")
        by_size.set_xticks(sizes)
        by_size.set_xticklabels([str(size) for size in sizes])
        by_size.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        by_size.set_xlim(min(sizes) / 1.6, max(sizes) * 1.6)
        by_size.set_xlabel("student size (embedding dimension)")
        by_time.set_xlabel("full-sort inference of all users (ms)")
        for axis in (by_size, by_time):
            axis.set_ylabel(f"test {metric}")
            axis.legend(fontsize=8, ncol=2)
        seeds = len(self.args.seed_values)
        figure.suptitle(f"{self.args.dataset}, {self.args.backbone}, {self.args.protocol} protocol "
                        f"({seeds} seed{'s' if seeds > 1 else ''}{'; bars: std' if seeds > 1 else ''})")
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--backbone", default="BPR", choices=["BPR", "LightGCN", "NeuMF"])
    parser.add_argument("--protocol", default="recbole", choices=sorted(PROTOCOLS))
    parser.add_argument("--sizes", default="20", help="student sizes, comma-separated")
    parser.add_argument("--teacher_size", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (2020, 2021, ...)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--metric", default="ndcg@10", help="the main metric")
    parser.add_argument("--epochs", type=int, default=None, help="override RecBole's epochs")
    parser.add_argument("--config_files", default="", help="extra YAML files, space-separated")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--gpu_id", default="")
    parser.add_argument("--inference_repeats", type=int, default=5)
    parser.add_argument("--results", default=os.path.join(REPO, "results"))
    parser.add_argument("--work", default=os.path.join(REPO, ".bench", "benchmark"))
    args = parser.parse_args(argv)
    args.sizes_text = args.sizes
    args.sizes = [int(size) for size in args.sizes.split(",")]
    args.seed_values = [2020 + index for index in range(args.seeds)]
    args.methods = [method for method in args.methods.split(",") if method]
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose among {METHODS}")
    if any(method in DISTILLERS for method in args.methods) and "teacher" not in args.methods:
        args.methods.insert(0, "teacher")  # the distillers need it
    args.config_files = [path for path in args.config_files.split(" ") if path]
    return args


def main(argv=None):
    args = parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config must not read the benchmark's own flags
    benchmark = Benchmark(args)
    benchmark.run()
    benchmark.write_reports()
    print(open(os.path.join(benchmark.folder, benchmark.name + ".md")).read())


if __name__ == "__main__":
    from recbole_derrd.cli import run_main

    run_main(main)
