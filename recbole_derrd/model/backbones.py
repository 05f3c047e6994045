"""
recbole_derrd.model.backbones
#############################
What distillation needs from a RecBole general recommender, per architecture:

- its scores for a batch of users against all items (the teacher's top-N);
- its scores for a batch of (user, sampled items) pairs (the student's side of RRD);
- the representations DE distils: user and item tables for matrix-factorisation-like models
  (BPR: the embeddings; LightGCN: the propagated final embeddings).

A model without a defined representation can still teach RRD; asking for its representation
raises :class:`RepresentationUndefinedError`.
"""

import torch

from recbole.data.interaction import Interaction


class RepresentationUndefinedError(ValueError):
    """No DE representation is defined for this architecture."""


class Backbone:
    """Generic access to a RecBole general recommender through its own scoring methods."""

    def __init__(self, model):
        self.model = model

    @property
    def name(self):
        return type(self.model).__name__

    def score_users(self, users):
        """Scores of ``users`` against every item id, ``[len(users), n_items]``."""
        interaction = Interaction({self.model.USER_ID: users})
        try:
            scores = self.model.full_sort_predict(interaction)
        except NotImplementedError:
            n_items = self.model.n_items
            items = torch.arange(n_items, device=users.device)
            pairs = Interaction(
                {
                    self.model.USER_ID: users.repeat_interleave(n_items),
                    self.model.ITEM_ID: items.repeat(len(users)),
                }
            )
            scores = self.model.predict(pairs)
        return scores.view(len(users), -1)

    def pair_scores(self, users, items):
        """Scores of ``users[b]`` with each of ``items[b]``: ``[B]`` x ``[B, S]`` -> ``[B, S]``."""
        interaction = Interaction(
            {
                self.model.USER_ID: users.repeat_interleave(items.shape[1]),
                self.model.ITEM_ID: items.reshape(-1),
            }
        )
        return self.model.predict(interaction).view(items.shape)

    def side_tables(self):
        """``(user_table, item_table)``: the representation of every user and item id."""
        raise RepresentationUndefinedError(
            f"No DE representation is defined for {self.name}: it can teach RRD (set "
            f"use_de=False), but DE needs a teacher/student of {', '.join(BACKBONES)}."
        )

    @property
    def has_side_tables(self):
        return type(self).side_tables is not Backbone.side_tables


class MatrixFactorizationBackbone(Backbone):
    """BPR: user and item embedding tables; a score is their inner product."""

    def side_tables(self):
        return self.model.user_embedding.weight, self.model.item_embedding.weight

    @staticmethod
    def table_scores(user_table, item_table, users, items):
        """Inner products of ``users[b]`` with ``items[b, s]``, without a ``[B, S, d]`` copy
        of the user vectors."""
        user_vectors = user_table[users].unsqueeze(-1)  # [B, d, 1]
        return torch.bmm(item_table[items], user_vectors).squeeze(-1)

    def pair_scores(self, users, items):
        user_table, item_table = self.side_tables()
        return self.table_scores(user_table, item_table, users, items)


class LightGCNBackbone(MatrixFactorizationBackbone):
    """LightGCN: the propagated (layer-averaged) user and item embeddings."""

    def side_tables(self):
        return self.model.forward()


BACKBONES = {
    "BPR": MatrixFactorizationBackbone,
    "LightGCN": LightGCNBackbone,
}


def backbone_of(model):
    """The :class:`Backbone` adapter for a RecBole model instance."""
    return BACKBONES.get(type(model).__name__, Backbone)(model)
