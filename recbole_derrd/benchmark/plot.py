"""
recbole_derrd.benchmark.plot
############################
A table's figure (``<backbone>-<protocol>.png``, matplotlib): test quality against student
size, and against full-sort inference time.
"""

from recbole_derrd.benchmark.methods import METHODS


def plot(path, args, summary, teacher):
    """Two panels: test quality against student size, and against full-sort inference time
    (the teacher a point there, a dashed line on the left). ``summary``: the table's
    :meth:`~recbole_derrd.benchmark.report.Report.summary`, ``teacher`` its teacher row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_size, by_time) = plt.subplots(1, 2, figsize=(11, 4.5))
    sizes = sorted({size for method, size in summary if method != "teacher"})
    plot_methods(by_size, by_time, args.metric, summary, sizes)
    if teacher:
        plot_teacher(by_size, by_time, args, teacher)
    label_axes(by_size, by_time, args.metric, sizes)
    seeds = len(args.seed_values)
    figure.suptitle(f"{args.dataset}, {args.backbone}, {args.protocol} protocol "
                    f"({seeds} seed{'s' if seeds > 1 else ''}{'; bars: std' if seeds > 1 else ''})")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_methods(by_size, by_time, metric, summary, sizes):
    """Each student method's mean and spread at each size, and against its inference time."""
    markers = dict(zip(METHODS[1:], "osv^<>DPX"))
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


def plot_teacher(by_size, by_time, args, teacher):
    """The teacher: a dashed line (and its spread) against size, a star against time."""
    metric = args.metric
    spread = teacher[metric][1] or 0.0
    model = "" if args.teacher_backbone == args.backbone else f"{args.teacher_backbone}, "
    label = f"teacher ({model}d={args.teacher_size})"
    by_size.axhline(teacher[metric][0], color="gray", linestyle="--", label=label)
    by_size.axhspan(teacher[metric][0] - spread, teacher[metric][0] + spread, color="gray", alpha=0.15)
    if teacher["inference_seconds"]:
        by_time.errorbar([1000 * teacher["inference_seconds"]], [teacher[metric][0]], yerr=[spread],
                         marker="*", markersize=12, color="gray", linestyle="none", label=label)


def label_axes(by_size, by_time, metric, sizes):
    import matplotlib.ticker

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
