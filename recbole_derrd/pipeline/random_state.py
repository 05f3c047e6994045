"""
recbole_derrd.pipeline.random_state
###################################
The random generators a RecBole run draws from, captured as plain data and restored.

A run draws from four places: Python's ``random``, NumPy's global generator (RecBole's negative
samplers), torch's global generators (parameter initialisation, DE's Gumbel noise; one per GPU
on CUDA) and the training dataloader's own ``generator`` (RecBole shuffles with it). The state
of all of them is what a resumed run needs to continue the very same random sequence.

The captured state holds only tensors, numbers, lists and dicts, so that a checkpoint holding
it loads with ``torch.load(weights_only=True)``.
"""

import contextlib
import random

import numpy as np
import torch


def global_random_state():
    """The state of Python's, NumPy's and torch's global generators, as plain data."""
    python_version, python_internal, python_gauss = random.getstate()
    numpy_kind, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
    state = {
        "python": {
            "version": python_version,
            "internal": list(python_internal),
            "gauss_next": python_gauss,
        },
        "numpy": {
            "kind": numpy_kind,
            "keys": torch.from_numpy(numpy_keys.astype(np.int64)),
            "pos": int(numpy_pos),
            "has_gauss": int(numpy_has_gauss),
            "cached_gaussian": float(numpy_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_global_random_state(state):
    """Inverse of :func:`global_random_state`.

    CUDA states are restored for the devices both runs have (a run resumed on a machine with
    another number of GPUs continues with the states it has for the others).
    """
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    numpy = state["numpy"]
    np.random.set_state(
        (
            numpy["kind"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)


def run_random_state(train_data):
    """Everything random a training epoch depends on: the global generators and the
    shuffling generator of ``train_data`` (a RecBole dataloader)."""
    state = global_random_state()
    state["dataloader"] = train_data.generator.get_state()
    return state


def set_run_random_state(state, train_data):
    """Inverse of :func:`run_random_state`."""
    set_global_random_state(state)
    train_data.generator.set_state(state["dataloader"])


@contextlib.contextmanager
def preserved_random_state():
    """Run a block without disturbing the global random generators (Python, NumPy, torch)."""
    state = global_random_state()
    try:
        yield
    finally:
        set_global_random_state(state)
