r"""
DERRD
################################################
Reference:
    SeongKu Kang, Junyoung Hwang, Wonbin Kweon, Hwanjo Yu. "DE-RRD: A Knowledge Distillation
    Framework for Recommender System." In CIKM 2020.

.. math::
    \mathcal{L} = \mathcal{L}_{base} + \lambda_{DE} \mathcal{L}_{DE} + \lambda_{RRD} \mathcal{L}_{RRD}

- :math:`\mathcal{L}_{base}`: the student backbone's own RecBole loss (BPR, LightGCN's
  BPR + L2, NeuMF's binary cross-entropy).
- :math:`\mathcal{L}_{DE}` (:mod:`recbole_derrd.model.experts`): one bank of experts per student
  table, on the batch's unique users plus 0.5 x (unique positive + unique negative items); or,
  for jointly encoding backbones (NeuMF, ``de_layer: joint | hidden``), one bank on the batch's
  unique (user, item) pairs.
- :math:`\mathcal{L}_{RRD}` (:mod:`recbole_derrd.model.rrd`): on the batch's unique users, with
  interesting/uninteresting items resampled every epoch (:mod:`recbole_derrd.teacher.ranking`).
- Early stopping counts evaluations once DE's routing has settled
  (:meth:`DERRD.early_stopping_counts`), not during its transient first epochs.
"""

import torch
import torch.nn as nn

from recbole_derrd.model.backbones import backbone_class, with_side_tables
from recbole_derrd.model.distiller import Distiller
from recbole_derrd.model.experts import (
    DistillationExperts,
    anneal_length,
    annealed_temperature,
    pop_routing_stats,
    routing_settled,
)
from recbole_derrd.model.rrd import RRD_MODES, ranking_loss
from recbole_derrd.teacher.ranking import UninterestingSampler, sample_interesting, sort_by_teacher
from recbole_derrd.settings.registry import register_distiller
from recbole_derrd.settings.validation import check_data_requirements


#: Smallest selection temperature accepted (``de_tau_start``, ``de_tau_end``).
MIN_SELECTION_TAU = 1e-30


@register_distiller
class DERRD(Distiller):
    r"""A student backbone distilled from a frozen teacher with Distillation Experts (DE) and
    Relaxed Ranking Distillation (RRD). Inference is the plain student."""

    # RRD's weight first: its term is the cheap one, and the one that does most of the work on
    # ml-100k (README, benchmark); DE's is then chosen with RRD's in place
    loss_weight_keys = ("lambda_rrd", "lambda_de")
    term_switches = {"lambda_rrd": "use_rrd", "lambda_de": "use_de"}
    shape_keys = ("use_de", "de_num_experts", "de_selection", "de_layer")
    logged_diagnostics = {"tau": ("tau", ".3g"), "active_experts": ("experts/entity", ".2f")}
    #: DE's routing has settled once its experts per entity change by at most this fraction in
    #: an epoch (:meth:`early_stopping_counts`).
    routing_settled_change = 0.05

    @classmethod
    def check_keys(cls, checker):
        super().check_keys(checker)
        use_de, use_rrd = checker.boolean("use_de"), checker.boolean("use_rrd")
        num_experts = checker.integer("de_num_experts", minimum=1)
        checker.choice("de_selection", DistillationExperts.selections)
        checker.choice("de_routing", DistillationExperts.routings)
        floor = checker.number("de_weight_floor", minimum=0)
        if floor is not None and num_experts is not None and num_experts >= 1 and floor >= 1 / num_experts:
            checker.fail(
                f"de_weight_floor ({floor}) must be below 1/de_num_experts ({1 / num_experts:.4g}): "
                "a floor that high could drop every expert of an entity"
            )
        # the selection divides logits (plus Gumbel noise, |x| up to ~1e2) by tau: below 1e-30
        # the quotient overflows float32 to inf and the softmax turns to NaN
        checker.number("de_tau_start", minimum=MIN_SELECTION_TAU)
        checker.number("de_tau_end", minimum=MIN_SELECTION_TAU)
        checker.integer("de_anneal_epochs", minimum=1, optional=True)
        cls.check_de_layer(checker)
        topn = checker.integer("rrd_topn", minimum=1)
        interesting = checker.integer("rrd_num_interesting", minimum=1)
        mode = checker.choice("rrd_mode", RRD_MODES)
        checker.integer("rrd_num_uninteresting", minimum=0 if mode == "interesting_only" else 1)
        checker.number("rrd_rank_temperature", strictly_positive=True)
        checker.boolean("rrd_sample_interesting")
        if topn is not None and interesting is not None and interesting > topn:
            checker.fail(
                f"rrd_num_interesting (K={interesting}) must not exceed rrd_topn (N={topn}): "
                "interesting items are drawn from the teacher's top-N"
            )
        if use_de is False and use_rrd is False:
            checker.fail("use_de and use_rrd are both False: nothing would be distilled")

    @classmethod
    def schedule_settings(cls, config):
        """DE's annealing lasts ``de_anneal_epochs``, by default the run's ``epochs`` up to 300
        (:func:`~recbole_derrd.model.experts.anneal_length`)."""
        return {"de_anneal_epochs": anneal_length(config["de_anneal_epochs"], config["epochs"])}

    @classmethod
    def check_de_layer(cls, checker):
        """``de_layer`` must be a representation both sides define (checked on names, before
        any model exists)."""
        config = checker.config
        if not config["use_de"] or config["student_model"] not in cls.students():
            return
        student = backbone_class(config["student_model"])
        teacher = None if config["teacher_checkpoint"] else backbone_class(config["teacher_model"])
        layer = cls.de_layer(config)
        if layer == "embeddings":
            if teacher is not None and not teacher.defines_side_tables():
                checker.fail(
                    f"DE needs a teacher representation, and none is defined for "
                    f"teacher_model {config['teacher_model']} ({', '.join(with_side_tables())} "
                    "have one); set use_de: False to distil its ranking with RRD alone"
                )
        elif layer not in student.pair_layers:
            checker.fail(
                f"de_layer must be embeddings{''.join(', ' + name for name in student.pair_layers)}"
                f" for a {config['student_model']} student, got {layer!r}"
            )
        elif teacher is not None and layer not in teacher.pair_layers:
            checker.fail(
                f"de_layer {layer!r} needs a teacher with that joint representation "
                f"(a {config['student_model']}); teacher_model is {config['teacher_model']} "
                "(set de_layer: embeddings)"
            )

    @staticmethod
    def de_layer(config):
        """``de_layer``, or the student backbone's default (``embeddings`` for MF-like
        backbones, ``joint`` for NeuMF)."""
        return config["de_layer"] or backbone_class(config["student_model"]).default_de_layer

    @classmethod
    def data_requirements(cls, config, dataset, split=None):
        if config["use_rrd"]:
            uninteresting = 0 if config["rrd_mode"] == "interesting_only" else config["rrd_num_uninteresting"]
            check_data_requirements(config, dataset, config["rrd_topn"], uninteresting,
                                    topn_key="rrd_topn", uninteresting_key="rrd_num_uninteresting",
                                    split=split)

    def __init__(self, config, dataset, teacher=None, split=None):
        super().__init__(config, dataset, teacher=teacher, split=split)
        self.use_de = config["use_de"]
        self.use_rrd = config["use_rrd"]
        self.lambda_de = config["lambda_de"]
        self.lambda_rrd = config["lambda_rrd"]
        self.loss_names = ("base",) + ("de",) * self.use_de + ("rrd",) * self.use_rrd
        if self.use_de:
            self._init_experts(config)
        if self.use_rrd:
            self._init_ranking(config)

    # ----- DE -----

    def _init_experts(self, config):
        """One bank of experts per student table (teacher targets precomputed, frozen), or one
        bank on pair representations."""
        self.de_pair_layer = None
        self.tau_start, self.tau_end = config["de_tau_start"], config["de_tau_end"]
        self.anneal_epochs = anneal_length(config["de_anneal_epochs"], config["epochs"])
        self.selection_tau = self.tau_start
        experts = lambda student_dim, teacher_dim: DistillationExperts(  # noqa: E731
            student_dim, teacher_dim, config["de_num_experts"], config["de_selection"],
            weight_floor=config["de_weight_floor"], routing=config["de_routing"],
        )
        layer = self.de_layer(config)
        if layer != "embeddings":
            self.de_pair_layer = layer
            probe_users = probe_items = torch.ones(1, dtype=torch.long, device=self.device)
            student_dim = self.student_backbone.pair_representation(probe_users, probe_items, layer).shape[1]
            with torch.no_grad():
                teacher_dim = self.teacher_backbone.pair_representation(
                    probe_users, probe_items, layer
                ).shape[1]
            self.experts = nn.ModuleDict({"pair": experts(student_dim, teacher_dim)})
            return
        teacher_tables = self.teacher_backbone.side_tables()
        banks = {}
        for name, (side, student_table) in self.student_backbone.side_tables().items():
            if name in teacher_tables and teacher_tables[name][0] == side:
                target = teacher_tables[name][1]
            else:
                target = self.teacher_backbone.side_representation(side)
            self.register_buffer(f"teacher_{name}_repr", target.detach().clone(), persistent=False)
            banks[name] = experts(student_table.shape[1], target.shape[1])
        self.experts = nn.ModuleDict(banks)

    def de_target(self, name):
        """The frozen teacher representation a student table is distilled towards."""
        return getattr(self, f"teacher_{name}_repr")

    def de_term(self, interaction, batch_users):
        r""":math:`\mathcal{L}_{DE}` of the batch."""
        if self.de_pair_layer is not None:
            return self.pair_de_term(interaction)
        positive, negative = (torch.unique(items) for items in self.batch_items(interaction))
        # An item that is both a positive and a negative of the batch is reconstructed once
        # (one Gumbel draw) and counted in both terms.
        items, occurrence = torch.unique(torch.cat([positive, negative]), return_inverse=True)
        tables = self.student_backbone.side_tables()
        total = 0.0
        for name, experts in self.experts.items():  # one bank per table (2 for MF, 4 for NeuMF)
            side, table = tables[name]
            target = self.de_target(name)
            if side == "user":
                total = total + self.reduce(
                    experts(table.index_select(0, batch_users), target[batch_users], self.selection_tau)
                )
            else:
                losses = experts(table.index_select(0, items), target[items], self.selection_tau)[occurrence]
                positive_losses, negative_losses = losses.split([len(positive), len(negative)])
                total = total + 0.5 * (self.reduce(positive_losses) + self.reduce(negative_losses))
        return total

    def pair_de_term(self, interaction):
        r""":math:`\mathcal{L}_{DE}` on the joint representations of the batch's unique pairs."""
        pairs = torch.unique(interaction[self.USER_ID] * self.n_items + interaction[self.ITEM_ID])
        users, items = pairs // self.n_items, pairs % self.n_items
        student_repr = self.student_backbone.pair_representation(users, items, self.de_pair_layer)
        with torch.no_grad():
            teacher_repr = self.teacher_backbone.pair_representation(users, items, self.de_pair_layer)
        return self.reduce(self.experts["pair"](student_repr, teacher_repr, self.selection_tau))

    # ----- RRD -----

    def _init_ranking(self, config):
        self.rrd_mode = config["rrd_mode"]
        self.num_interesting = config["rrd_num_interesting"]
        self.num_uninteresting = (
            0 if self.rrd_mode == "interesting_only" else config["rrd_num_uninteresting"]
        )
        self.rank_temperature = config["rrd_rank_temperature"]
        self.sample_interesting = config["rrd_sample_interesting"]
        topn = self.compute_teacher_topn(config["rrd_topn"])
        self.register_buffer("teacher_topn", topn, persistent=False)
        self.uninteresting_sampler = None
        if self.num_uninteresting:
            indptr, items = self.training_split.interactions
            self.uninteresting_sampler = UninterestingSampler(
                indptr, items, topn, self.n_items, device=self.device
            )
        empty = torch.zeros((self.n_users, 0), dtype=torch.long, device=self.device)
        self.register_buffer("interesting_items", empty, persistent=False)
        self.register_buffer("uninteresting_items", empty.clone(), persistent=False)
        self.sampled_epoch = None

    def resample(self, epoch):
        """The interesting and uninteresting items of every user for ``epoch``."""
        generator = self.epoch_generator(epoch)
        if self.sample_interesting:
            positions = sample_interesting(
                self.n_users, self.teacher_topn.shape[1], self.num_interesting,
                self.rank_temperature, generator,
            )
        else:  # the teacher's top-K, in order (the authors' later finding)
            positions = torch.arange(self.num_interesting, device=self.device).expand(self.n_users, -1)
        self.interesting_items = self.teacher_topn.gather(1, positions)
        if self.uninteresting_sampler is not None:
            uninteresting = self.uninteresting_sampler.sample(self.num_uninteresting, generator)
            if self.rrd_mode == "full":  # ranked too: in the teacher's order
                uninteresting = sort_by_teacher(self.teacher_backbone.pair_scores, uninteresting)
            self.uninteresting_items = uninteresting
        self.sampled_epoch = epoch

    def rrd_term(self, batch_users):
        r""":math:`\mathcal{L}_{RRD}` of the batch's unique users."""
        if self.sampled_epoch is None:
            self.resample(0)  # used outside the trainer
        interesting = self.interesting_items[batch_users]
        sampled = torch.cat([interesting, self.uninteresting_items[batch_users]], dim=1)
        scores = self.student_backbone.pair_scores(batch_users, sampled)
        interesting_scores, uninteresting_scores = scores.split(
            [interesting.shape[1], sampled.shape[1] - interesting.shape[1]], dim=1
        )
        return self.reduce(ranking_loss(interesting_scores, uninteresting_scores, self.rrd_mode))

    # ----- training -----

    def start_epoch(self, epoch):
        r"""Anneal :math:`\tau` and resample the RRD items of every user for ``epoch``."""
        if self.use_de:
            self.selection_tau = annealed_temperature(
                epoch, self.tau_start, self.tau_end, self.anneal_epochs
            )
        if self.use_rrd and self.lambda_rrd and self.sampled_epoch != epoch:
            self.resample(epoch)

    def epoch_diagnostics(self):
        r"""DE's selection temperature :math:`\tau` of the epoch, the mean number of experts each
        entity was routed to (selection weight above ``de_weight_floor``), and the share of
        mixtures computed sparsely."""
        if not self.use_de:
            return {}
        active_experts, sparse_share = pop_routing_stats(list(self.experts.values()))
        return {"tau": self.selection_tau, "active_experts": active_experts, "sparse_share": sparse_share}

    def early_stopping_counts(self, diagnostics):
        r"""Early stopping counts evaluations once DE's routing has settled
        (:func:`~recbole_derrd.model.experts.routing_settled`): while the selection network
        still learns whom each expert reconstructs, the student's validation score can peak
        early and dip, and a patience counted from that peak ended a run on ml-100k one epoch
        before it passed it, at a fifth of its gain (results/ml-100k/BPR-paper.seed-2022.md)."""
        if not (self.use_de and self.lambda_de):
            return True
        counts = [epoch["active_experts"] for epoch in diagnostics if epoch.get("active_experts") is not None]
        return routing_settled(counts, self.routing_settled_change)

    def shared_state(self):
        """The teacher's representations and top-N, and this epoch's RRD samples."""
        state = []
        if self.use_de and self.de_pair_layer is None:
            state += [self.de_target(name) for name in self.experts]
        if self.use_rrd:
            state += [self.teacher_topn, self.interesting_items, self.uninteresting_items]
        return state

    def calculate_loss(self, interaction):
        r"""``(L_base, lambda_DE * L_DE, lambda_RRD * L_RRD)`` (the parts switched on), so that
        RecBole logs each part; RecBole sums them for the backward pass."""
        batch_users = torch.unique(interaction[self.USER_ID])
        with self.student_backbone.training_step():  # LightGCN propagates once per step
            losses = [self.base_loss(interaction)]
            if self.use_de:
                losses.append(self.weighted_term(self.lambda_de, self.de_term, interaction, batch_users))
            if self.use_rrd:
                losses.append(self.weighted_term(self.lambda_rrd, self.rrd_term, batch_users))
        return tuple(losses)
