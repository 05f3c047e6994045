"""
recbole_derrd.pipeline.teacher_quality
######################################
Whether a distillation run's teacher is worth distilling from: its score on the validation
split next to the student's.

A teacher worse than the student it teaches (a degenerate ``teacher_config``, a wrong or
undertrained checkpoint) makes distillation pull the student down, and nothing in the test
metrics says why. The run scores its teacher on the validation split (``valid_metric``), shows
it in the final table beside the student alone (or, without ``compare_student_alone``, beside
the distilled student), and warns when the teacher is the worse one.
"""

import dataclasses
from logging import getLogger

from recbole.utils import calculate_valid_score

from recbole_derrd.pipeline.random_state import preserved_random_state
from recbole_derrd.pipeline.training import evaluate_model


@dataclasses.dataclass
class TeacherValidation:
    """A teacher's validation score and the student score it is compared with."""

    teacher_name: str
    teacher_path: str
    #: RecBole's lower-case ``valid_metric`` and whether bigger is better.
    valid_metric: str
    bigger_is_better: bool
    teacher_score: float
    student_score: float
    #: Which student: ``the student alone`` or ``the distilled student``.
    student_label: str

    @property
    def teacher_is_worse(self):
        if self.bigger_is_better:
            return self.teacher_score < self.student_score
        return self.teacher_score > self.student_score

    def table_note(self):
        """A line under the run's final table when the teacher is the worse (else "")."""
        if not self.teacher_is_worse:
            return ""
        return f"\n(warning: the teacher is worse than {self.student_label} on validation)"

    def warn_if_worse(self):
        if self.teacher_is_worse:
            getLogger().warning(self.warning_message())

    def result_entries(self):
        """The run result's ``teacher_valid_score`` and ``teacher_worse_than_student``."""
        return {"teacher_valid_score": self.teacher_score,
                "teacher_worse_than_student": self.teacher_is_worse}

    def warning_message(self):
        return (
            f"The teacher ({self.teacher_name}, {self.teacher_path}) is worse than "
            f"{self.student_label} on the validation split: {self.valid_metric} "
            f"{self.teacher_score:.4f} vs {self.student_score:.4f}. Distilling from it pulls "
            "the student towards a worse model: check teacher_checkpoint, or train a stronger "
            "teacher (teacher_model, teacher_embedding_size, teacher_config)."
        )


def validate_teacher(config, model, train_data, valid_data, distilled_valid_result, alone=None):
    """Score the distiller ``model``'s teacher on the validation split, against the student
    alone (``alone``, a :class:`~recbole_derrd.pipeline.student_alone.StudentAloneComparison`)
    or else the distilled student (``distilled_valid_result``; evaluated now when empty). The
    global random state is left as it was.

    Returns:
        TeacherValidation
    """
    valid_metric = config["valid_metric"].lower()
    with preserved_random_state():
        teacher_result = evaluate_model(config, model.teacher.model, train_data, valid_data)
        if alone is None and not distilled_valid_result:
            distilled_valid_result = evaluate_model(config, model, train_data, valid_data)
    if alone is not None:
        student_score, label = alone.alone_valid_score, "the student alone"
    else:
        student_score = calculate_valid_score(distilled_valid_result, valid_metric)
        label = "the distilled student"
    return TeacherValidation(
        teacher_name=model.teacher.name,
        teacher_path=str(model.teacher.path),
        valid_metric=valid_metric,
        bigger_is_better=bool(config["valid_metric_bigger"]),
        teacher_score=float(calculate_valid_score(teacher_result, valid_metric)),
        student_score=float(student_score),
        student_label=label,
    )
