"""
recbole_derrd.benchmark.machine
###############################
What a timing was measured on, for the benchmark's and the speed reports.
"""

import os
import platform
import re

import torch


def device_label(device):
    """A report's file name for ``device``: ``cpu``, or ``cuda-`` and the GPU's model (two GPU
    models never share a report)."""
    device = torch.device(device)
    if device.type != "cuda":
        return device.type
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def machine_info(device):
    """What a timing was measured on: CPU model, cores, torch and its CPU threads, the device."""
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as handle:
            cpuinfo = handle.read().splitlines()
        names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        info["cpu"] = names[0] if names else info["cpu"]
        flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
        # what decides float speed: AVX-512 and AMX (Intel), and so how costly subnormals are
        info["cpu_flags"] = [flag for flag in ("avx2", "avx512f", "amx_tile") if flag in flags]
    except OSError:
        pass
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info
