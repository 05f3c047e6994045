"""
recbole_derrd.pipeline.student_objective
########################################
How the student alone (:mod:`recbole_derrd.pipeline.student_alone`) trains: the distilled
student's objective less its distillation terms, so that "distilled vs alone" compares like
with like whatever the configuration (``loss_reduction: sum`` and ``weight_decay`` of
``properties/experiments/paper.yaml`` included).

- The loss is the backbone's under the distiller's ``loss_reduction``
  (:func:`recbole_derrd.model.objective.reduced_backbone_loss`, the distillers' base term).
- The optimizer is the distillers' (:func:`recbole_derrd.trainer.fused_optimizer`), built from
  the same keys (``learner``, ``learning_rate``, ``weight_decay``).

A distiller run with every distillation weight at 0 then trains its student exactly as the
student alone trains (the same parameters, bit for bit, for backbones that draw no random
numbers while training, BPR and LightGCN: a distiller builds its own modules after the
student, which moves the global generator NeuMF's dropout draws from).
"""

import functools

from recbole.utils import get_trainer as recbole_get_trainer

from recbole_derrd.model.objective import reduced_backbone_loss
from recbole_derrd.trainer import fused_optimizer
from recbole_derrd.utils import safe_trainer_class

#: The keys of a distiller's configuration that shape the student alone's objective although
#: only distillers read them (:func:`recbole_derrd.settings.defaults.distillation_keys`): the
#: student alone keeps them, and its cache fingerprint with them.
OBJECTIVE_KEYS = ("loss_reduction",)


class StudentObjectiveMixin:
    """Mixed into the backbone's own (safe) trainer: the reduced loss and the distillers'
    optimizer."""

    def _build_optimizer(self, **kwargs):
        return fused_optimizer(super()._build_optimizer(**kwargs))

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if loss_func is None:
            loss_func = functools.partial(
                reduced_backbone_loss, self.model, loss_reduction=self.config["loss_reduction"]
            )
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)


@functools.lru_cache(maxsize=None)
def _student_alone_trainer(model_type, model_name):
    base = safe_trainer_class(recbole_get_trainer(model_type, model_name))
    return type(f"StudentAlone{base.__name__}", (StudentObjectiveMixin, base), {})


def student_alone_trainer(alone_config):
    """The trainer class of the student alone of configuration ``alone_config``
    (:func:`recbole_derrd.pipeline.student_alone.student_alone_config`): RecBole's trainer of its
    model, with the distilled student's objective."""
    return _student_alone_trainer(alone_config["MODEL_TYPE"], alone_config["model"])
