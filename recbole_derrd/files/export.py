"""
recbole_derrd.files.export
##########################
A distilled student leaves the plugin as an ordinary RecBole model.

A distiller's checkpoint holds its student backbone (``student.*`` entries), the distillation
experts and an optimizer. :func:`export_student` keeps the backbone alone and writes it in
RecBole's checkpoint layout (``config``, ``epoch``, ``cur_step``, ``best_valid_score``,
``state_dict``, ``other_parameter``) with ``model`` naming the RecBole model (e.g. ``BPR``), the
configuration stripped of the plugin's keys, and nothing pickled: with torch >= 2.6, RecBole's
own ``torch.load(path)`` reads it, so the student is served without this plugin installed.
"""

import os
from logging import getLogger

import torch

from recbole_derrd.files.checkpoint import (
    CHECKPOINT_FORMAT,
    RESUME_KIND,
    CheckpointError,
    best_model_path,
    read_checkpoint,
    resume_path,
    write_new_file,
)
from recbole_derrd.settings.defaults import plugin_only_keys
from recbole_derrd.utils import UnknownModelError, get_model

#: Prefix of the student's entries in a distiller's state dict (the attribute ``student``).
STUDENT_PREFIX = "student."


def default_export_path(checkpoint_path, student_name):
    """``<folder>/<Backbone>-from-<checkpoint stem>.pth``, beside the distiller's checkpoint."""
    folder, name = os.path.split(checkpoint_path)
    return os.path.join(folder, f"{student_name}-from-{os.path.splitext(name)[0]}.pth")


def refuse_resume_file(path, checkpoint):
    """A resume file holds the model of the epoch it was written at (untrained, for an early
    interrupt), not the run's best model: exporting it is refused, naming the file to export.

    Raises:
        CheckpointError
    """
    if checkpoint.get("kind") != RESUME_KIND:
        return
    try:
        best_model = best_model_path(path)
    except CheckpointError:
        best_model = checkpoint.get("best_model_file") or "the run's best-model file"
    raise CheckpointError(
        f"'{path}' is a resume file (the model at the start of epoch {checkpoint.get('epoch', -1) + 1}, "
        f"not the run's best one): export the run's best model, '{best_model}', instead."
    )


def warn_if_unfinished(path, checkpoint, warn):
    """``warn`` (called with the message) when the run that wrote a best-model file did not
    finish: its resume file, beside it, is not marked finished (the file holds the best model
    so far)."""
    companion = resume_path(path)
    if not os.path.isfile(companion):
        return
    try:
        state = read_checkpoint(companion)
    except CheckpointError:
        return
    if state.get("kind") == RESUME_KIND and state.get("run_id") == checkpoint.get("run_id") \
            and not state.get("finished"):
        warn(
            f"warning: the run that wrote '{path}' did not finish (it stopped in epoch "
            f"{state.get('epoch', -1) + 1}): this is its best model so far. Resume it "
            f"(--resume={companion}) and export its final best model."
        )


def export_student(checkpoint_path, output_path=None, warn=None):
    r"""Write the student backbone of a distiller's checkpoint as a plain RecBole checkpoint.

    Args:
        checkpoint_path (str): checkpoint of a distiller (``DERRD``) written by this plugin.
        output_path (str): where to write; default :func:`default_export_path`. An existing
            file is never overwritten: the next free ``<stem>-<n>.pth`` is used instead.
        warn (callable): called with each warning (default: the root logger's ``warning``):
            the run that wrote the checkpoint did not finish, the output name was taken.

    Returns:
        str: the path written.

    Raises:
        CheckpointError: unreadable, a resume file, or not a distiller's checkpoint.
    """
    checkpoint = read_checkpoint(checkpoint_path)
    refuse_resume_file(checkpoint_path, checkpoint)
    warn = warn or getLogger().warning
    warn_if_unfinished(checkpoint_path, checkpoint, warn)
    config = checkpoint.get("config") or {}
    distiller_name = config.get("model")
    try:
        distiller = getattr(get_model(distiller_name), "is_distiller", False)
    except UnknownModelError:
        distiller = False
    if not distiller:
        raise CheckpointError(
            f"'{checkpoint_path}' holds a {distiller_name} model, not a distiller of this plugin: "
            "there is no student to export."
        )
    student_name = config["student_model"]
    state_dict = {
        key[len(STUDENT_PREFIX):]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(STUDENT_PREFIX)
    }
    if not state_dict:
        raise CheckpointError(f"'{checkpoint_path}' holds no student parameters ('student.*').")
    removed = plugin_only_keys(distiller_name, student_name)
    student_config = {key: value for key, value in config.items() if key not in removed}
    student_config["model"] = student_name
    exported = {
        "format": CHECKPOINT_FORMAT,
        "model": student_name,
        "config": student_config,
        "epoch": checkpoint["epoch"],
        "cur_step": checkpoint["cur_step"],
        "best_valid_score": checkpoint["best_valid_score"],
        "state_dict": state_dict,
        "other_parameter": checkpoint.get("other_parameter"),
        "split_fingerprint": checkpoint.get("split_fingerprint"),
        "derrd": {"role": "exported student", "distiller": distiller_name,
                  "source": os.path.basename(checkpoint_path)},
    }
    requested = output_path or default_export_path(checkpoint_path, student_name)
    # created exclusively: a file (or link) at the name, or one that appears meanwhile, is
    # never replaced
    output_path = write_new_file(requested, lambda stream: torch.save(exported, stream))
    if output_path != requested:
        warn(f"{requested} exists: the student is written to {output_path}")
    return output_path
