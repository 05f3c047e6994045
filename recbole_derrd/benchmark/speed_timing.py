"""
recbole_derrd.benchmark.speed_timing
####################################
How the speed benchmarks time and measure: wall time with the device synchronised, medians of
interleaved turns, and this process's resident memory read from the kernel.
"""

import statistics
import time

import torch


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(function, device):
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return time.perf_counter() - start, result


def interleaved_medians(steps, device, repeats):
    """Median time of each of ``steps`` (name -> function), run in turns whose order alternates;
    a first turn of each is a warm-up."""
    times = {name: [] for name in steps}
    for name, step in steps.items():
        step()
    for repeat in range(repeats):
        for name in (list(steps) if repeat % 2 == 0 else list(steps)[::-1]):
            times[name].append(timed(steps[name], device)[0])
    return {name: statistics.median(values) for name, values in times.items()}


def memory_mb(field):
    """``VmRSS`` (resident now) or ``VmHWM`` (peak since the last reset) of this process, in MB.
    (``getrusage``'s maxrss would count the parent's memory at fork.)"""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_memory():
    """Make ``VmHWM`` start again from the current resident size (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
