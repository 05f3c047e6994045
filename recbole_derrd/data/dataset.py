"""
recbole_derrd.data.dataset
##########################
Data preparation around RecBole's own ``create_dataset`` / ``data_preparation``:

- a missing dataset is downloaded the way RecBole would (RecBole 1.2.1's own download calls
  ``torch.distributed.barrier()`` even in a single process and crashes after downloading),
  and where it cannot be fetched the error says where to put the atomic files;
- RecBole silently unpickles stale ``saved/<dataset>-*.pth`` dataset and dataloader caches
  whenever they exist; here they are used only when the user turned them on, and an existing
  cache file (a pickle, which runs whatever code it holds) is read only with
  ``trust_checkpoint``;
- :func:`split_fingerprint` identifies a training split, so that a teacher trained on other
  data (or another split) is refused;
- :class:`TrainingSplit` holds what a run derives from its training split (fingerprint,
  interactions), computed once and handed to the teacher, the model and the trainer.
"""

import contextlib
import functools
import hashlib
import importlib
import os
import tempfile
import uuid
from logging import getLogger

import numpy as np
import torch
import yaml

from recbole.data import create_dataset as recbole_create_dataset
from recbole.data import data_preparation as recbole_data_preparation
from recbole.utils import ModelType

from recbole_derrd.data.atomic_files import check_atomic_files
from recbole_derrd.errors import UntrustedCheckpointError, UserError
from recbole_derrd.settings.user_input import read_by_recbole
from recbole_derrd.data.eval_candidates import install_fixed_eval_candidates
from recbole_derrd.data.split_checks import check_after_split, check_before_split


class DatasetNotFoundError(UserError, FileNotFoundError):
    """The dataset's atomic files are missing and cannot be downloaded."""


def atomic_inter_files(config):
    """The interaction files RecBole will read for this configuration."""
    name, path = config["dataset"], config["data_path"]
    suffixes = config["benchmark_filename"] or [None]
    return [
        os.path.join(path, f"{name}.inter" if suffix is None else f"{name}.{suffix}.inter")
        for suffix in suffixes
    ]


def _recbole_download_url(dataset_name):
    import recbole

    url_file = os.path.join(os.path.dirname(recbole.__file__), "properties", "dataset", "url.yaml")
    with open(url_file, encoding="utf-8") as handle:
        return (yaml.safe_load(handle) or {}).get(dataset_name)


def ensure_dataset(config):
    """Make sure the atomic files of ``config['dataset']`` are present, downloading them from
    RecBole's servers if RecBole knows the dataset.

    Raises:
        DatasetNotFoundError: missing and not downloadable; the message names the expected files.
    """
    missing = [path for path in atomic_inter_files(config) if not os.path.isfile(path)]
    if missing:
        _download_dataset(config, missing)
    # RecBole's own download waits at a barrier only when the files are missing, which may
    # not be the same on every process: here every process waits once, at the same point.
    if not config["single_spec"]:
        torch.distributed.barrier()
    check_atomic_files(config)  # RecBole's own errors on a malformed file say little


def _download_dataset(config, missing):
    name, path = config["dataset"], config["data_path"]
    where = (
        f"Put the RecBole atomic files of '{name}' under {os.path.abspath(path)}/ "
        f"(at least {', '.join(os.path.basename(p) for p in missing)}), or point `data_path` "
        f"at the folder that contains a '{name}/' folder."
    )
    url = _recbole_download_url(name)
    if url is None:
        raise DatasetNotFoundError(
            f"Dataset '{name}' not found: {missing[0]} does not exist and RecBole knows no "
            f"download for this name. {where}"
        )
    if config["local_rank"] != 0:
        return  # the first process of the machine downloads, the others wait at the barrier
    from recbole.utils.url import download_url, extract_zip, rename_atomic_files

    logger = getLogger()
    logger.info(f"Dataset '{name}' not found under {path}: downloading it from {url}")
    try:
        os.makedirs(path, exist_ok=True)
        archive = download_url(url, path)
        extract_zip(archive, path)
        os.unlink(archive)
        rename_atomic_files(path, os.path.splitext(os.path.basename(archive))[0], name)
    except Exception as error:  # no network, proxy, disk full...: say where the files go
        raise DatasetNotFoundError(
            f"Dataset '{name}' not found under {path} and the download from {url} failed "
            f"({type(error).__name__}: {error}). {where}"
        ) from None
    still_missing = [p for p in atomic_inter_files(config) if not os.path.isfile(p)]
    if still_missing:
        raise DatasetNotFoundError(
            f"Downloaded '{name}' from {url}, but {still_missing[0]} is still missing. {where}"
        )


@contextlib.contextmanager
def _recbole_caches_only_if_asked(config):
    """Point RecBole's cache lookups at a path that cannot exist, unless the user opted in."""
    sentinel = os.path.join(tempfile.gettempdir(), f"recbole-derrd-no-cache-{uuid.uuid4().hex}")
    overridden = {}
    if not (config["save_dataset"] or config["dataset_save_path"]):
        overridden["dataset_save_path"] = config["dataset_save_path"]
    if not (config["save_dataloaders"] or config["dataloaders_save_path"]):
        overridden["dataloaders_save_path"] = config["dataloaders_save_path"]
    for key in overridden:
        config[key] = sentinel
    try:
        yield
    finally:
        for key, value in overridden.items():
            config[key] = value


def pickled_cache_file(config, cache):
    """The file RecBole would unpickle for its ``"dataset"`` or ``"dataloaders"`` cache, or
    None where the user did not turn that cache on (RecBole's own file names)."""
    if cache == "dataset":
        if not (config["save_dataset"] or config["dataset_save_path"]):
            return None
        dataset_module = importlib.import_module("recbole.data.dataset")
        class_name = f"{config['model']}Dataset"
        if not hasattr(dataset_module, class_name):
            class_name = {
                ModelType.SEQUENTIAL: "SequentialDataset",
                ModelType.KNOWLEDGE: "KnowledgeBasedDataset",
            }.get(config["MODEL_TYPE"], "Dataset")
        default = f"{config['dataset']}-{class_name}.pth"
        return config["dataset_save_path"] or os.path.join(config["checkpoint_dir"], default)
    if not (config["save_dataloaders"] or config["dataloaders_save_path"]):
        return None
    default = f"{config['dataset']}-for-{config['model']}-dataloader.pth"
    return config["dataloaders_save_path"] or os.path.join(config["checkpoint_dir"], default)


def refuse_untrusted_cache(config, cache):
    """RecBole's dataset and dataloader caches are pickles, and unpickling runs whatever code a
    file contains: an existing cache file is read only with ``trust_checkpoint``.

    Raises:
        UntrustedCheckpointError: the cache file exists and the user did not opt in.
    """
    path = pickled_cache_file(config, cache)
    if path is None or not os.path.lexists(path) or config["trust_checkpoint"] is True:
        return
    keys = "save_dataset / dataset_save_path" if cache == "dataset" else (
        "save_dataloaders / dataloaders_save_path"
    )
    raise UntrustedCheckpointError(
        f"RecBole's {cache} cache '{path}' ({keys}) is a pickle: loading it would run whatever "
        "code the file contains. If you wrote this file and trust it, opt in with "
        "`trust_checkpoint: True` (or `--trust_checkpoint=True`); otherwise delete it, or turn "
        f"the cache off ({keys})."
    )


def _dataset_as_configured(config):
    """What RecBole reads when it loads and splits the data, as an error names it."""
    return (f"dataset '{config['dataset']}' with these data settings (data_path, load_col, "
            "filters such as user_inter_num_interval, eval_args)")


def create_dataset(config):
    """RecBole's ``create_dataset``, after :func:`ensure_dataset`, without stale caches, and
    without unpickling a dataset cache unless the user trusts it."""
    ensure_dataset(config)
    refuse_untrusted_cache(config, "dataset")
    with _recbole_caches_only_if_asked(config), read_by_recbole(_dataset_as_configured(config)):
        return recbole_create_dataset(config)


def data_preparation(config, dataset):
    """RecBole's ``data_preparation`` without silently reused dataloader caches, and without
    unpickling a dataloader cache unless the user trusts it; splits no run can use are refused
    (:mod:`recbole_derrd.data.split_checks`); with ``fixed_eval_candidates``,
    sampled evaluation uses candidates drawn once per split
    (:mod:`recbole_derrd.data.eval_candidates`)."""
    refuse_untrusted_cache(config, "dataloaders")
    check_before_split(config, dataset)
    with _recbole_caches_only_if_asked(config), read_by_recbole(_dataset_as_configured(config)):
        loaders = recbole_data_preparation(config, dataset)
    check_after_split(config, *loaders)
    install_fixed_eval_candidates(config, *loaders)
    return loaders


def split_fingerprint(dataset):
    """A short hash of a training split: its user/item counts and its (user, item) pairs,
    in internal ids. Two models can share knowledge only if their fingerprints agree."""
    users = dataset.inter_feat[dataset.uid_field].numpy().astype(np.int64)
    items = dataset.inter_feat[dataset.iid_field].numpy().astype(np.int64)
    n_users, n_items = dataset.user_num, dataset.item_num
    pairs = np.sort(users * n_items + items)
    digest = hashlib.sha256(np.array([n_users, n_items], dtype=np.int64).tobytes())
    digest.update(pairs.tobytes())
    return digest.hexdigest()[:16]


def train_interactions(dataset):
    """The training split as CSR tensors ``(indptr [n_users + 1], items)``, duplicates merged,
    items sorted within each user."""
    matrix = dataset.inter_matrix(form="csr")
    matrix.sum_duplicates()
    matrix.sort_indices()
    return (
        torch.from_numpy(matrix.indptr.astype("int64")),
        torch.from_numpy(matrix.indices.astype("int64")),
    )


class TrainingSplit:
    """A run's training split and what the run derives from it, each computed once (on first
    use) and shared by the teacher's checks, the model and the trainer."""

    def __init__(self, dataset):
        self.dataset = dataset

    @functools.cached_property
    def fingerprint(self):
        """:func:`split_fingerprint` of the training split."""
        return split_fingerprint(self.dataset)

    @functools.cached_property
    def interactions(self):
        """:func:`train_interactions` of the training split: CSR ``(indptr, items)``."""
        return train_interactions(self.dataset)


def training_split(dataset, split=None):
    """``split`` if it is the :class:`TrainingSplit` of ``dataset``, else a new one."""
    if split is not None and split.dataset is dataset:
        return split
    return TrainingSplit(dataset)
