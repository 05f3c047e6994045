"""
recbole_derrd.model.backbones
#############################
What distillation needs from a RecBole general recommender, per architecture:

- its scores for a batch of users against all items (the teacher's top-N), through the model's
  own ``full_sort_predict`` or, failing that, its pairwise scoring in bounded chunks;
- its scores for a batch of (user, sampled items) pairs (the student's side of RRD);
- the representations DE distils (docs/method.md, "Which representation DE distils"):

  * *side tables*: one representation per user id and per item id, named (``user``, ``item``
    for BPR; LightGCN's propagated final embeddings; NeuMF's four embedding tables);
  * *pair representations* of a (user, item) pair, for models that encode them jointly
    (NeuMF: ``joint``, the input of its prediction layer, i.e. the GMF product next to the
    MLP tower's output, the paper's choice; ``hidden``, the MLP tower's last hidden layer).

A model without a defined representation can still teach RRD; asking for its representation
raises :class:`RepresentationUndefinedError`.

One adapter class per architecture holds everything the plugin knows about it (the RecBole
model it serves, the keys that size it, its representations, its YAML defaults); registered
(:func:`~recbole_derrd.settings.registry.register_backbone`), its model can be a student. The
distillers, the teacher and the run ask the adapter, never a model's name.
"""

import contextlib

import torch

from recbole.data.interaction import Interaction

from recbole_derrd.errors import UserError
from recbole_derrd.settings.registry import backbones, register_backbone, registered_backbone


class RepresentationUndefinedError(UserError, ValueError):
    """No DE representation of the requested kind is defined for this architecture."""


class Backbone:
    """Generic access to a RecBole general recommender through its own scoring methods.

    Args:
        model: the RecBole model.
        pair_chunk (int): (user, item) pairs scored at once when the model has no
            ``full_sort_predict`` (bounds memory for MLP-based models).
    """

    #: The RecBole model this adapter serves (None: the generic adapter of any model).
    model_name = None
    #: Keys that decide the shapes of the model's parameters.
    shape_keys = ("embedding_size",)
    #: Pair representation layers this architecture defines.
    pair_layers = ()
    #: What DE distils by default: ``embeddings`` (side tables) or a pair layer.
    default_de_layer = "embeddings"
    #: YAML defaults of every distiller with this student (None:
    #: ``properties/distiller/<model_name>.yaml``, where the plugin has one).
    defaults_file = None

    @staticmethod
    def size_parameters(size):
        """The hyperparameters that give the model the size ``size`` (an on-demand teacher's
        ``teacher_embedding_size``)."""
        return {"embedding_size": size}

    def __init__(self, model, pair_chunk=262144):
        self.model = model
        self.pair_chunk = pair_chunk

    @property
    def name(self):
        return type(self.model).__name__

    def score_users(self, users):
        """Scores of ``users`` against every item id, ``[len(users), n_items]``."""
        try:
            scores = self.model.full_sort_predict(Interaction({self.model.USER_ID: users}))
            return scores.view(len(users), -1)
        except NotImplementedError:
            n_items = self.model.n_items
            items = torch.arange(n_items, device=users.device).expand(len(users), n_items)
            return self.pair_scores(users, items)

    def pair_scores(self, users, items):
        """Scores of ``users[b]`` with each of ``items[b]``: ``[B]`` x ``[B, S]`` -> ``[B, S]``,
        at most ``pair_chunk`` pairs at a time."""
        flat_users = users.repeat_interleave(items.shape[1])
        flat_items = items.reshape(-1)
        scores = [
            self.score_pairs(chunk_users, chunk_items)
            for chunk_users, chunk_items in zip(
                flat_users.split(self.pair_chunk), flat_items.split(self.pair_chunk)
            )
        ]
        return torch.cat(scores).view(items.shape)

    def score_pairs(self, users, items):
        """Scores of the pairs ``(users[p], items[p])``: the model's own ``predict``."""
        return self.model.predict(Interaction({self.model.USER_ID: users, self.model.ITEM_ID: items}))

    def side_tables(self):
        """``{name: (side, table)}``: the representation of every user / item id."""
        raise RepresentationUndefinedError(
            f"No DE representation is defined for {self.name}: it can teach RRD (set "
            f"use_de=False), but DE needs {', '.join(with_side_tables())} on both sides."
        )

    def pair_representation(self, users, items, layer):
        """Representation of the pairs ``(users[p], items[p])``, ``[P, d]``."""
        with_pairs = [adapter for adapter in backbones() if adapter.pair_layers]
        where = (f"exist for {', '.join(adapter.model_name for adapter in with_pairs)} on both sides "
                 f"(de_layer: {' or '.join(with_pairs[0].pair_layers)})" if with_pairs else "exist for no backbone")
        raise RepresentationUndefinedError(
            f"{self.name} has no joint (user, item) representation '{layer}' for DE; pair layers "
            f"{where}."
        )

    @classmethod
    def defines_side_tables(cls):
        return cls.side_tables is not Backbone.side_tables

    def side_representation(self, side):
        """One table per side: the named table if the model has a single one for ``side``,
        else the concatenation of its tables of that side (NeuMF: [GMF ; MLP])."""
        tables = [table for table_side, table in self.side_tables().values() if table_side == side]
        return tables[0] if len(tables) == 1 else torch.cat(tables, dim=1)

    @contextlib.contextmanager
    def training_step(self):
        """Within one training step, let every consumer share one evaluation of expensive
        representations (see :class:`LightGCNBackbone`)."""
        yield


@register_backbone
class MatrixFactorizationBackbone(Backbone):
    """BPR: user and item embedding tables; a score is their inner product."""

    model_name = "BPR"

    def side_tables(self):
        return {
            "user": ("user", self.model.user_embedding.weight),
            "item": ("item", self.model.item_embedding.weight),
        }

    #: Score all items and gather when the catalogue is at most this many times the sampled
    #: items per user: a [B, n_items] matrix product then beats gathering B x S item vectors
    #: (measured on a 2-core CPU: 2.6 ms instead of 4.7 ms per ml-100k batch, forward and
    #: backward; 2.4x slower at 5,000 items).
    dense_scoring_factor = 24

    @classmethod
    def table_scores(cls, user_table, item_table, users, items):
        """Inner products of ``users[b]`` with ``items[b, s]``, ``[B]`` x ``[B, S]`` -> ``[B, S]``.

        Large catalogues: item vectors gathered with ``index_select`` (its backward, an
        ``index_add``, is about 10x faster on the CPU than that of ``F.embedding`` or tensor
        indexing for the many repeated ids of a batch), then one batched product, without a
        ``[B, S, d]`` copy of the user vectors.
        """
        user_vectors = user_table.index_select(0, users)
        if item_table.shape[0] <= cls.dense_scoring_factor * items.shape[1]:
            return (user_vectors @ item_table.T).gather(1, items)
        item_vectors = item_table.index_select(0, items.reshape(-1)).view(*items.shape, -1)
        return torch.bmm(item_vectors, user_vectors.unsqueeze(-1)).squeeze(-1)

    def pair_scores(self, users, items):
        tables = self.side_tables()
        return self.table_scores(tables["user"][1], tables["item"][1], users, items)


@register_backbone
class LightGCNBackbone(MatrixFactorizationBackbone):
    """LightGCN: the propagated (layer-averaged) user and item embeddings.

    Propagation over the whole graph is the expensive part of a step; inside
    :meth:`training_step` it runs once and LightGCN's own loss, DE and RRD all use that result
    (one graph, one backward pass).
    """

    model_name = "LightGCN"

    def __init__(self, model, pair_chunk=262144):
        super().__init__(model, pair_chunk)
        self.shared = None

    def propagated(self):
        return self.shared if self.shared is not None else self.model.forward()

    def side_tables(self):
        users, items = self.propagated()
        return {"user": ("user", users), "item": ("item", items)}

    @contextlib.contextmanager
    def training_step(self):
        self.shared = self.model.forward()
        shared = self.shared
        self.model.forward = lambda: shared  # LightGCN.calculate_loss calls self.forward()
        try:
            yield
        finally:
            del self.model.forward  # the instance attribute; the class method is back
            self.shared = None


@register_backbone
class NeuMFBackbone(Backbone):
    """NeuMF: four embedding tables, and joint representations of a (user, item) pair.

    Scores are NeuMF's logits (``forward``), not its sigmoid ``predict``: a ranking loss over
    probabilities squeezed into (0, 1) would barely separate items.
    """

    model_name = "NeuMF"
    shape_keys = ("mf_embedding_size", "mlp_embedding_size", "mlp_hidden_size")
    pair_layers = ("joint", "hidden")
    default_de_layer = "joint"

    @staticmethod
    def size_parameters(size):
        """Both embedding tables of size ``size`` and a [size, size / 2] MLP tower."""
        return {"mf_embedding_size": size, "mlp_embedding_size": size,
                "mlp_hidden_size": [size, max(1, size // 2)]}

    def side_tables(self):
        model = self.model
        return {
            "user_mf": ("user", model.user_mf_embedding.weight),
            "item_mf": ("item", model.item_mf_embedding.weight),
            "user_mlp": ("user", model.user_mlp_embedding.weight),
            "item_mlp": ("item", model.item_mlp_embedding.weight),
        }

    def pair_representation(self, users, items, layer):
        if layer not in self.pair_layers:
            return super().pair_representation(users, items, layer)
        model = self.model
        mlp_input = torch.cat([model.user_mlp_embedding(users), model.item_mlp_embedding(items)], -1)
        hidden = model.mlp_layers(mlp_input)
        if layer == "hidden":
            return hidden
        return torch.cat([model.user_mf_embedding(users) * model.item_mf_embedding(items), hidden], -1)

    def score_pairs(self, users, items):
        return self.model.forward(users, items)


def backbone_class(model_name):
    """The adapter class for a model name (generic :class:`Backbone` if none is registered, or
    for a value that is no name at all: the configuration checks report that one)."""
    return registered_backbone(model_name) or Backbone


def backbone_of(model):
    """The :class:`Backbone` adapter for a RecBole model instance."""
    return backbone_class(type(model).__name__)(model)


def with_side_tables():
    """The RecBole models whose adapter defines side tables (DE's and HTD's representations)."""
    return [adapter.model_name for adapter in backbones() if adapter.defines_side_tables()]
