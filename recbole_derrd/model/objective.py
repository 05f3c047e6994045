"""
recbole_derrd.model.objective
#############################
The student's own loss under the run's loss reduction, written once: it is the base term of
every distiller's loss (:meth:`recbole_derrd.model.distiller.Distiller.base_loss`) and the whole
loss of the same student trained alone (:mod:`recbole_derrd.pipeline.student_alone`), so that
"distilled vs alone" compares two runs of one objective, the distillation terms aside.

RecBole's losses are batch means. The paper's convention (``loss_reduction: sum``) sums every
term over the batch, i.e. scales the backbone's mean by the batch size; with Adam, which is
invariant to the loss's scale, the two differ in the relative weight of ``weight_decay``
(its gradient is not scaled), which is why the student alone must follow the same convention.
"""

#: The loss reductions a distiller accepts (``loss_reduction``).
LOSS_REDUCTIONS = ("mean", "sum")


def reduced_backbone_loss(backbone, interaction, loss_reduction):
    """``backbone``'s own RecBole loss on the batch ``interaction``: its batch mean, or with
    ``loss_reduction`` ``sum`` that mean times the batch's rows (the sum over the batch)."""
    loss = backbone.calculate_loss(interaction)
    return loss * len(interaction) if loss_reduction == "sum" else loss
