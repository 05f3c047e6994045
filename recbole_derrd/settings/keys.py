"""
recbole_derrd.settings.keys
###########################
Configuration keys by role. Two configurations describe the same training when they agree on
every key outside :data:`DERIVED_KEYS` and :data:`RUNTIME_KEYS` (:func:`learned_from`): this
decides whether a cached teacher fits and whether a resumed run continues the same training.
"""

import os

from recbole.utils.argument_list import dataset_arguments

#: Keys that decide which data a model is trained on and how it is split: a teacher and its
#: student, or an interrupted run and its continuation, must agree on all of them.
SPLIT_KEYS = ["dataset"] + list(dataset_arguments) + ["eval_args", "seed", "repeatable"]

#: Keys a final configuration derives from the others (or from the process), never set by users.
DERIVED_KEYS = {
    "model",
    "dataset",
    "data_path",
    "device",
    "single_spec",
    "local_rank",
    "world_size",
    "nproc",
    "ip",
    "port",
    "offset",
    "MODEL_TYPE",
    "MODEL_INPUT_TYPE",
    "eval_type",
    "valid_metric_bigger",
    "valid_neg_sample_args",
    "test_neg_sample_args",
}


#: Keys that say where and how a run executes, not what a model learns from it.
RUNTIME_KEYS = [
    "data_path",
    "checkpoint_dir",
    "gpu_id",
    "use_gpu",
    "worker",
    "state",
    "show_progress",
    "eval_batch_size",
    "reproducibility",
    "dist_backend",
    "popularity_groups",  # what the test report shows, not what a model learns
]


def learned_from(plain):
    """The keys of a plain final configuration that decide what a model learns (model and
    dataset included; derived and runtime keys left out)."""
    ignored = set(RUNTIME_KEYS) | (DERIVED_KEYS - {"model", "dataset"})
    return {key: value for key, value in plain.items() if key not in ignored}


def data_path_root(config):
    """The ``data_path`` a user gave (RecBole appends the dataset name to it)."""
    return os.path.dirname(os.path.normpath(config["data_path"]))


def rebuilt_parameters(plain, overrides=None):
    """The parameters that rebuild a configuration from the plain final configuration stored in
    a checkpoint (:func:`recbole_derrd.config.config_from_plain`), ``overrides`` replacing the
    stored values (device, paths...)."""
    parameters = {key: value for key, value in plain.items() if key not in DERIVED_KEYS}
    parameters["data_path"] = data_path_root(plain)
    # unpickling stays the caller's decision, never the file's; and a file never turns on
    # RecBole's dataset and dataloader caches (pickles read, and written, at paths it names)
    parameters["trust_checkpoint"] = False
    parameters.update(save_dataset=False, dataset_save_path=None, save_dataloaders=False,
                      dataloaders_save_path=None)
    parameters.update(overrides or {})
    return parameters
