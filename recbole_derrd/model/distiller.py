"""
recbole_derrd.model.distiller
#############################
What every distiller of this plugin shares: a RecBole student backbone trained with its own
loss plus distillation terms from a frozen teacher.

- The student is the backbone itself (``student_model``, e.g. RecBole's ``BPR``), held as
  ``self.student``; ``predict`` / ``full_sort_predict`` are the student's, untouched by any
  teacher tensor or sample, and the exported model is this backbone alone.
- The teacher is handed in: a :class:`~recbole_derrd.teacher.loading.FrozenTeacher` the run
  loaded once, checked against the student's data (:mod:`recbole_derrd.pipeline.training`,
  which also trains an on-demand teacher). A model never loads or trains a teacher.
- Everything the rest of the package knows about a distiller is declared here, on its class:
  its loss weights (:attr:`loss_weight_keys`, :attr:`term_switches`), the keys that shape its
  parameters (:attr:`shape_keys`), the checks of its keys (:meth:`check_keys`) and of the data
  (:meth:`data_requirements`), its YAML defaults (:attr:`defaults_file`), its trainer. A
  subclass is made a model of the plugin by
  :func:`~recbole_derrd.settings.registry.register_distiller`; its student backbone is asked
  through its adapter (:mod:`recbole_derrd.model.backbones`), never by name.
- Per-epoch work (temperature annealing, resampling) happens in :meth:`start_epoch`, called by
  the trainer, with a random generator seeded from ``seed`` and the epoch, so that every epoch's
  samples are reproducible (and identical on every process of a distributed run).
"""

import torch

from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

from recbole_derrd.data.dataset import training_split
from recbole_derrd.pipeline.distributed import writes_files
from recbole_derrd.model.backbones import backbone_of
from recbole_derrd.model.objective import LOSS_REDUCTIONS, reduced_backbone_loss
from recbole_derrd.teacher.ranking import cached_teacher_topn, teacher_topn, topn_cache_path
from recbole_derrd.settings.registry import UnknownModelError, backbone_names, is_distiller_name, recbole_model
from recbole_derrd.teacher.loading import TEACHER_TYPES, TeacherError
from recbole_derrd.errors import UserError
from recbole_derrd.trainer import DistillationTrainer
from recbole_derrd.settings.validation import AUTO, ConfigChecker, check_weight_search_keys


class Distiller(GeneralRecommender):
    r"""Base class: a student backbone, a frozen teacher, and the loss reduction convention.

    Subclasses add their distillation losses in ``calculate_loss``, declare their keys in the
    class attributes below and may override :meth:`start_epoch`, :meth:`check_keys`,
    :meth:`schedule_settings` and :meth:`data_requirements`.
    """

    is_distiller = True
    input_type = InputType.PAIRWISE
    #: Student backbones this distiller supports; None: every backbone with an adapter.
    student_models = None
    #: The YAML defaults of this distiller's own keys; None:
    #: ``recbole_derrd/properties/model/<Name>.yaml`` (:mod:`recbole_derrd.settings.defaults`).
    #: Tuned defaults for one student backbone sit in ``<its stem>/<Backbone>.yaml``.
    defaults_file = None
    #: Names of the parts ``calculate_loss`` returns, for the training log.
    loss_names = ("base",)
    #: The trainer :func:`recbole_derrd.utils.get_trainer` returns for this model.
    trainer_class = DistillationTrainer
    #: Keys of the distillation terms' weights, in the order the weight search chooses them
    #: (:mod:`recbole_derrd.pipeline.weight_search`) when they are set to ``auto``.
    loss_weight_keys = ()
    #: Weight key -> the boolean key that switches its term on: a term whose weight the search
    #: sets to 0 is switched off, not computed with weight 0.
    term_switches = {}
    #: Keys that decide the shapes of this distiller's own parameters (besides its student's):
    #: a resume with other values cannot fit, and is refused before any work.
    shape_keys = ()
    #: Figures of :meth:`epoch_diagnostics` the training log shows: key -> (label, format).
    logged_diagnostics = {}

    # ----- configuration (class-level hooks used by recbole_derrd.config.Config) -----

    @classmethod
    def students(cls):
        """The student backbones this distiller supports."""
        return tuple(cls.student_models if cls.student_models is not None else backbone_names())

    @classmethod
    def resolve_input_type(cls, final_config_dict):
        """The student backbone's input type (pairwise for BPR, pointwise for NeuMF)."""
        student = final_config_dict.get("student_model")
        if student not in cls.students():
            return cls.input_type  # check_config reports the bad name
        return recbole_model(student).input_type

    @classmethod
    def check_config(cls, config):
        """Validate every plugin key once, when the configuration is built."""
        checker = ConfigChecker(config)
        cls.check_keys(checker)
        checker.raise_if_any()

    @classmethod
    def check_keys(cls, checker):
        # the student's size keys are RecBole's, checked with every model's
        # (recbole_derrd.settings.validation.check_training_keys)
        checker.choice("student_model", cls.students())
        teacher = checker.config["teacher_model"]
        try:
            if is_distiller_name(teacher) or recbole_model(teacher).type not in TEACHER_TYPES:
                checker.fail(f"teacher_model must be a RecBole general recommender, got {teacher}")
        except UnknownModelError as error:
            checker.fail(f"teacher_model: {error}")
        checker.integer("teacher_embedding_size", minimum=1)
        checker.existing_file("teacher_checkpoint")
        checker.boolean("trust_checkpoint")
        teacher_config = checker.config["teacher_config"]
        if isinstance(teacher_config, str):
            checker.existing_file("teacher_config")
        elif teacher_config is not None and not isinstance(teacher_config, dict):
            checker.fail(f"teacher_config must be a dict or a YAML file path, got {teacher_config!r}")
        checker.integer("teacher_score_batch_size", minimum=1)
        checker.choice("loss_reduction", LOSS_REDUCTIONS)
        checker.boolean("compare_student_alone")
        weights = {key: checker.loss_weight(key) for key in cls.loss_weight_keys}
        for key, switch in cls.term_switches.items():
            if weights[key] == AUTO and checker.config[switch] is False:
                checker.fail(
                    f"{key}: '{AUTO}' chooses the weight of a term that {switch}: False "
                    f"switches off; set {switch}: True, or give {key} a number"
                )
        check_weight_search_keys(checker, [key for key, weight in weights.items() if weight == AUTO])

    @classmethod
    def schedule_settings(cls, config):
        """Keys whose default follows ``epochs``, resolved for ``config``: a trial of the
        weight search runs fewer epochs, and keeps the schedule of the run it stands for."""
        return {}

    @classmethod
    def data_requirements(cls, config, dataset, split=None):
        """Checks of the configuration against the data (raise ConfigValueError); ``split``:
        the :class:`~recbole_derrd.data.dataset.TrainingSplit` of ``dataset``, if the run holds it."""

    # ----- the model -----

    def __init__(self, config, dataset, teacher=None, split=None):
        r"""
        Args:
            config (Config): the run's configuration.
            dataset (Dataset): the training split.
            teacher (FrozenTeacher): the teacher, loaded by the run
                (:func:`recbole_derrd.pipeline.training.prepare_distiller_teacher`, or
                :func:`~recbole_derrd.pipeline.training.build_model` from
                ``teacher_checkpoint``).
            split (TrainingSplit): the training split's fingerprint and interactions, if the
                run computed them.

        Raises:
            TeacherError: no teacher handed in (a model never loads or trains one).
        """
        super().__init__(config, dataset)
        automatic = [key for key in self.loss_weight_keys if config[key] == AUTO]
        if automatic:
            raise UserError(
                f"{type(self).__name__}: {', '.join(automatic)} is '{AUTO}', a weight that the "
                "run chooses before it builds the model (recbole_derrd.run_recbole_derrd, "
                "run_scripts/run.py); a model built directly needs a number."
            )
        if teacher is None:
            raise TeacherError(
                f"{type(self).__name__} needs a teacher: pass one (teacher=recbole_derrd.teacher."
                "loading.load_teacher(config, dataset)), build the model with recbole_derrd."
                "pipeline.training.build_model (which loads teacher_checkpoint), or use "
                "recbole_derrd.run_recbole_derrd, which trains an on-demand teacher."
            )
        self.training_split = training_split(dataset, split)
        self.data_requirements(config, dataset, self.training_split)
        self.LABEL = config["LABEL_FIELD"]
        # on the training device at once: DE and RRD read the student while the model is built
        self.student = recbole_model(config["student_model"])(config, dataset).to(self.device)
        self.student_backbone = backbone_of(self.student)
        # the random draws of building the teacher's model, here, as distillers drew them when
        # they loaded their teacher themselves (FrozenTeacher.replay_construction)
        teacher.replay_construction(dataset)
        self.teacher = teacher
        self.teacher_backbone = backbone_of(self.teacher.model)
        self.loss_reduction = config["loss_reduction"]
        self.seed = config["seed"]
        self.teacher_score_batch_size = config["teacher_score_batch_size"]
        self.show_progress = config["show_progress"]
        self.split_fingerprint = self.training_split.fingerprint
        self.writes_cache = writes_files(config)  # one process writes in a multi-process run

    def reduce(self, losses):
        """Per-entity losses to one number, by the configured convention (mean or sum)."""
        return losses.sum() if self.loss_reduction == "sum" else losses.mean()

    def base_loss(self, interaction):
        """The student backbone's own RecBole loss under the loss reduction: the student
        alone's whole loss (:func:`recbole_derrd.model.objective.reduced_backbone_loss`)."""
        return reduced_backbone_loss(self.student, interaction, self.loss_reduction)

    def weighted_term(self, weight, term, *args):
        """``weight * term(*args)``, the term not computed when ``weight`` is 0: it would add
        exactly 0 to the loss and its gradients (e.g. the student alone the weight search tries),
        at the term's full cost."""
        if not weight:
            return torch.zeros((), device=self.device)
        return weight * term(*args)

    def batch_items(self, interaction):
        """``(positive, negative)`` item ids of a batch: pairwise batches carry negatives in
        their own field, pointwise ones as rows labelled 0."""
        items = interaction[self.ITEM_ID]
        if self.NEG_ITEM_ID in interaction:
            return items, interaction[self.NEG_ITEM_ID]
        labels = interaction[self.LABEL]
        return items[labels > 0.5], items[labels <= 0.5]

    def epoch_generator(self, epoch):
        """A generator seeded from (seed, epoch), on the model's device."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(int(self.seed) * 1_000_003 + int(epoch))
        return generator

    def start_epoch(self, epoch):
        """Per-epoch work before the epoch's first batch (annealing, resampling)."""

    def epoch_diagnostics(self):
        """Figures of the epoch just trained, for the training log and the run's result (and
        counters reset for the next epoch); ``{}`` when the distiller has none."""
        return {}

    def early_stopping_counts(self, diagnostics):
        """Whether early stopping counts the evaluation that follows the epochs whose
        :meth:`epoch_diagnostics` are ``diagnostics`` (in order): False while the distiller is
        in a transient phase whose validation scores do not say where its training goes (the
        trainer then does not count it towards ``stopping_step``)."""
        return True

    def shared_state(self):
        """Tensors derived from the teacher and the epoch that every process of a
        multi-process run computes itself and must hold identically (checked by the trainer)."""
        return []

    def compute_teacher_topn(self, topn):
        """The teacher's top-``topn`` items of every user, training items excluded; read from
        the cache next to the teacher when the teacher file and the split are unchanged."""
        indptr, items = self.training_split.interactions
        chunk_users = max(1, self.teacher_score_batch_size // self.n_items)

        def compute():
            return teacher_topn(
                self.teacher_backbone.score_users, self.n_users, self.n_items, indptr, items,
                topn, chunk_users, self.device, show_progress=self.show_progress,
            )

        identity = {
            "teacher_sha256": self.teacher.digest,
            "split_fingerprint": self.split_fingerprint,
            "topn": topn,
            "n_users": self.n_users,
            "n_items": self.n_items,
        }
        # kept by the teacher object too: the trials of a weight search share one teacher, and
        # read (or compute) its top-N once, even where the cache file cannot be written
        memo = self.teacher.topn_by_split
        if (topn, self.split_fingerprint) not in memo:
            path = topn_cache_path(self.teacher.path, topn, self.split_fingerprint, self.teacher.digest)
            memo[topn, self.split_fingerprint] = cached_teacher_topn(
                path, compute, identity, write=self.writes_cache
            )
        return memo[topn, self.split_fingerprint].to(self.device)

    @property
    def training_interactions(self):
        """The training split as CSR tensors ``(indptr, items)``."""
        return self.training_split.interactions

    def student_parameter_count(self):
        """Parameters of the deployed student (the backbone alone); a run counts them with
        :func:`recbole_derrd.pipeline.training.parameter_count`."""
        return sum(parameter.numel() for parameter in self.student.parameters())

    def predict(self, interaction):
        return self.student.predict(interaction)

    def full_sort_predict(self, interaction):
        return self.student.full_sort_predict(interaction)

    def other_parameter(self):
        return self.student.other_parameter()

    def load_other_parameter(self, para):
        self.student.load_other_parameter(para)
