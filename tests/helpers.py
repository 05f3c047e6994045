"""Helpers shared by several test files (imported as ``helpers``: pytest puts ``tests/`` on
``sys.path``)."""

import hashlib
import math
import os
import socket

import torch


def directory_snapshot(path):
    """{relative path: sha256} of every file under ``path``."""
    snapshot = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                snapshot[os.path.relpath(full, path)] = hashlib.sha256(handle.read()).hexdigest()
    return snapshot


def brute_force_rrd(interesting, uninteresting):
    """-sum_k [s_k - log(sum_{l>=k} exp s_l + sum_j exp u_j)], term by term, in float64."""
    losses = []
    for user in range(interesting.shape[0]):
        s = interesting[user].tolist()
        u = uninteresting[user].tolist()
        total = 0.0
        for k in range(len(s)):
            denominator = sum(math.exp(v) for v in s[k:]) + sum(math.exp(v) for v in u)
            total -= s[k] - math.log(denominator)
        losses.append(total)
    return torch.tensor(losses, dtype=torch.float64)


def free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]
