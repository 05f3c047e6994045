"""Issue 5: the teacher's top-N cache, and samplers that never build a users x items tensor."""

import glob

import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils._python_dispatch import TorchDispatchMode

import recbole_derrd.model.distiller
from recbole.utils import init_seed

from recbole_derrd import DERRD, Config
from recbole_derrd.data.dataset import create_dataset, data_preparation
from recbole_derrd.teacher.loading import load_teacher
from recbole_derrd.teacher.ranking import (
    UninterestingSampler,
    cached_teacher_topn,
    rank_log_weights,
    sample_interesting,
    teacher_topn,
)
from recbole_derrd.benchmark.synthetic import synthetic_interactions, write_atomic_files


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any torch operation produces inside the block."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


def csr(users, items, n_users):
    order = np.lexsort((items, users))
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    return torch.from_numpy(indptr), torch.from_numpy(items[order].astype(np.int64))


@pytest.fixture(scope="module")
def large_split():
    """10,000 users x 50,000 items (5e8 cells: a dense mask would be 500 MB of bools)."""
    n_users, n_items = 10_000, 50_000
    users, items = synthetic_interactions(n_users - 1, n_items - 1, 300_000, seed=1)
    indptr, train_items = csr(users + 1, items + 1, n_users)  # id 0 is padding
    return n_users, n_items, indptr, train_items


def test_sampling_at_scale_never_builds_a_users_by_items_tensor(large_split):
    n_users, n_items, indptr, train_items = large_split
    topn, generator = 200, torch.Generator().manual_seed(0)
    user_table, item_table = torch.randn(n_users, 8), torch.randn(n_items, 8)
    guard = LargestTensor()
    with guard:
        top = teacher_topn(lambda users: user_table[users] @ item_table.T, n_users, n_items,
                           indptr, train_items, topn, chunk_users=100, device="cpu")
        sampler = UninterestingSampler(indptr, train_items, top, n_items)
        positions = sample_interesting(n_users, topn, 20, 10.0, generator, chunk_users=4096)
        uninteresting = sampler.sample(20, generator)
    # bounded by one chunk's scores or the excluded pairs, never users x items
    assert guard.largest <= max(100 * n_items, len(train_items) + n_users * topn)
    assert guard.largest < n_users * n_items / 50

    # and the distributions are still right at this scale
    for user in (1, 777, n_users - 1):
        excluded = set(train_items[indptr[user]:indptr[user + 1]].tolist()) | set(top[user].tolist()) | {0}
        assert not set(uninteresting[user].tolist()) & excluded
    # the most active user: its draws, mapped to their index among its allowed items, are
    # uniform (Kolmogorov-Smirnov over 6,000 draws from 100 epochs of 60)
    heavy = int(torch.argmax(indptr[1:] - indptr[:-1]))
    generator = torch.Generator().manual_seed(1)
    draws = torch.cat([sampler.sample(60, generator)[heavy] for _ in range(100)]).numpy()
    excluded = set(train_items[indptr[heavy]:indptr[heavy + 1]].tolist()) | set(top[heavy].tolist()) | {0}
    allowed = np.array(sorted(set(range(n_items)) - excluded))
    assert not set(draws.tolist()) & excluded
    index = np.searchsorted(allowed, draws)
    assert stats.kstest((index + 0.5) / len(allowed), "uniform").pvalue > 1e-3
    # interesting ranks: inclusion frequencies agree with an independent sampler of the same
    # law (Gumbel top-k on log-weights: successive sampling without replacement), rank by
    # rank, within 5 standard errors of the difference of two proportions
    observed = torch.bincount(positions.reshape(-1), minlength=topn).double() / n_users
    keys = rank_log_weights(topn, 10.0, dtype=torch.float64) - torch.empty(n_users, topn, dtype=torch.float64).exponential_(
        generator=torch.Generator().manual_seed(2)).log()
    reference = torch.bincount(keys.topk(20, dim=1).indices.reshape(-1), minlength=topn).double() / n_users
    standard_error = (2 * reference.clamp(1e-4, 1 - 1e-4) * (1 - reference.clamp(1e-4, 1 - 1e-4)) / n_users).sqrt()
    assert ((observed - reference).abs() <= 5 * standard_error + 1e-4).all()


def test_topn_cache_is_reused_and_invalidated(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(12).view(3, 4)

    identity = {"teacher_sha256": "a" * 64, "split_fingerprint": "s1", "topn": 4, "n_users": 3, "n_items": 9}
    path = str(tmp_path / "teacher.top4-s1-aaaa.pth")
    first = cached_teacher_topn(path, compute, identity)
    assert torch.equal(cached_teacher_topn(path, compute, identity), first) and len(calls) == 1
    assert torch.load(path, weights_only=True)["split_fingerprint"] == "s1"
    # a file at that path for another teacher or split is not trusted
    other = dict(identity, teacher_sha256="b" * 64)
    cached_teacher_topn(path, compute, other, write=False)
    assert len(calls) == 2
    open(path, "wb").write(b"corrupt")
    assert torch.equal(cached_teacher_topn(path, compute, identity), first) and len(calls) == 3


def test_derrd_reuses_its_topn_cache_until_teacher_or_split_change(workdir, fast_config, teacher_checkpoint,
                                                                 tmp_path, monkeypatch):
    import shutil

    teacher = tmp_path / "teacher.pth"
    shutil.copy(teacher_checkpoint, teacher)

    def build():
        config = Config("DERRD", "ml-100k", config_dict=fast_config(teacher_checkpoint=str(teacher), use_de=False))
        init_seed(config["seed"], config["reproducibility"])
        train_data = data_preparation(config, create_dataset(config))[0]
        return DERRD(config, train_data.dataset, teacher=load_teacher(config, train_data.dataset))

    first = build()
    caches = glob.glob(str(tmp_path / "teacher.top50-*.pth"))
    assert len(caches) == 1

    def must_not_score(*args, **kwargs):
        raise AssertionError("the cached top-N should have been reused")

    monkeypatch.setattr(recbole_derrd.model.distiller, "teacher_topn", must_not_score)
    assert torch.equal(build().teacher_topn, first.teacher_topn)
    monkeypatch.undo()

    # another teacher file (here: retrained weights) gets its own cache, the old one is kept
    checkpoint = torch.load(teacher, weights_only=True)
    checkpoint["state_dict"]["item_embedding.weight"] = -checkpoint["state_dict"]["item_embedding.weight"]
    torch.save(checkpoint, teacher)
    changed = build()
    assert len(glob.glob(str(tmp_path / "teacher.top50-*.pth"))) == 2
    assert not torch.equal(changed.teacher_topn, first.teacher_topn)


def test_synthetic_data_has_power_laws_and_loads_in_recbole(workdir, fast_config):
    users, items = synthetic_interactions(3000, 1500, 60000, seed=3)
    assert len(np.unique(users * 1500 + items)) == len(users) <= 60000
    assert len(users) > 55000
    degrees = np.sort(np.bincount(users))[::-1]
    popularity = np.sort(np.bincount(items, minlength=1500))[::-1]
    assert degrees[0] > 10 * np.median(degrees) and popularity[0] > 20 * np.median(popularity)
    # log-log slope of item popularity over ranks 10..500 is clearly negative (a power law)
    ranks = np.arange(10, 500)
    slope = np.polyfit(np.log(ranks), np.log(popularity[ranks] + 1), 1)[0]
    assert -1.5 < slope < -0.4
    write_atomic_files(str(workdir / "data"), "synthetic-small", users, items)
    config = Config("BPR", "synthetic-small", config_dict=dict(gpu_id="", data_path=str(workdir / "data")))
    dataset = create_dataset(config)
    assert dataset.inter_num == len(users)
    assert dataset.user_num == len(np.unique(users)) + 1
