"""
recbole_derrd.benchmark.methods
###############################
The benchmark's methods (the teacher, the student alone, and each distiller as a model of the
plugin with its switches), their search grids and the settings one takes from another's search,
the plugin's defaults a table's cells are keyed by, and the names of cells and settings.
"""

import yaml

#: Every method, in the tables' order; the default --methods are the DE-RRD paper's (and RRD-topK),
#: UnKD and HTD (the later distillers) run when named.
METHODS = ["teacher", "student", "RD", "CD", "DE", "RRD", "RRD-topK", "DE-RRD", "UnKD", "HTD"]
DEFAULT_METHODS = METHODS[:8]
#: (model, extra keys) of every student method; the backbone and size are added per cell.
#: RRD-topK: RRD with the teacher's top-K as the interesting items instead of sampling them.
DISTILLERS = {
    "RD": ("RD", {}),
    "CD": ("CD", {}),
    "DE": ("DERRD", {"use_rrd": False}),
    "RRD": ("DERRD", {"use_de": False}),
    "RRD-topK": ("DERRD", {"use_de": False, "rrd_sample_interesting": False}),
    "DE-RRD": ("DERRD", {}),
    "UnKD": ("UnKD", {}),
    "HTD": ("HTD", {}),
}
#: The keys that tell the methods of one model apart (DISTILLERS), never set per method.
IDENTITY_KEYS = {key for _, keys in DISTILLERS.values() for key in keys}
#: --tune: the search space of each method, searched on the validation split of the first seed,
#: the same number of trials (3) for every method. Values are explicit (not the plugin's current
#: defaults), so a later change of a default does not change what a stored trial means.
TUNING_GRIDS = {
    "student": [{"learning_rate": 0.001, "weight_decay": 0.0},
                {"learning_rate": 0.003, "weight_decay": 0.0},
                {"learning_rate": 0.001, "weight_decay": 1e-5}],
    "RD": [{"lambda_rd": value} for value in (0.01, 0.1, 1.0)],
    "CD": [{"lambda_cd": value} for value in (0.01, 0.1, 1.0)],
    "RRD": [{"lambda_rrd": value} for value in (0.001, 0.003, 0.01)],
    "DE-RRD": [{"lambda_de": value} for value in (0.001, 0.01, 0.1)],
    "UnKD": [{"lambda_unkd": value} for value in (0.01, 0.1, 1.0)],
    "HTD": [{"lambda_htd": value} for value in (1.0, 10.0, 100.0)],
}
#: --tune: settings taken from other methods' searches (method: [(source, keys), ...]), searched
#: after them. Every distiller trains its student with the student alone's chosen learning rate
#: and weight decay (the student's recipe is fixed first, distillation is tuned on top of it).
#: DE-RRD's lambda_rrd is RRD's choice (its own trials search lambda_de); DE alone uses
#: DE-RRD's lambda_de and RRD-topK RRD's lambda_rrd (no trials of their own: the report says so).
LEARNER_KEYS = ["learning_rate", "weight_decay"]
TUNED_FROM = {
    "RD": [("student", LEARNER_KEYS)],
    "CD": [("student", LEARNER_KEYS)],
    "RRD": [("student", LEARNER_KEYS)],
    "DE-RRD": [("student", LEARNER_KEYS), ("RRD", ["lambda_rrd"])],
    "DE": [("student", LEARNER_KEYS), ("DE-RRD", ["lambda_de"])],
    "RRD-topK": [("student", LEARNER_KEYS), ("RRD", ["lambda_rrd"])],
    "UnKD": [("student", LEARNER_KEYS)],
    "HTD": [("student", LEARNER_KEYS)],
}
#: The loss weights a method's cells are keyed by: a cell at the plugin's defaults is keyed by
#: their values when it ran, so a later change of a default never relabels an old cell.
WEIGHT_KEYS = {"RD": ["lambda_rd"], "CD": ["lambda_cd"], "DE": ["lambda_de"], "RRD": ["lambda_rrd"],
               "RRD-topK": ["lambda_rrd"], "DE-RRD": ["lambda_de", "lambda_rrd"],
               "UnKD": ["lambda_unkd"], "HTD": ["lambda_htd"]}
#: --tune: methods also run once (first seed) at the plugin's defaults, as a user gets them,
#: and with their weights chosen by the plugin's own search (``auto``: recbole_derrd.pipeline.weight_search).
DEFAULT_ROWS = ["RRD", "DE-RRD"]
AUTO_ROWS = {"RRD": {"lambda_rrd": "auto"}, "DE-RRD": {"lambda_rrd": "auto", "lambda_de": "auto"}}
#: The search's former default trial length (30 epochs, patience 5): rows run with it are kept
#: in the reports (not run again), beside those with trials as long as the run.
SHORT_TRIALS = {"weight_search_epochs": 30, "weight_search_stopping_step": 5}
#: Order of the searches within a seed (a method after the one it takes settings from).
TUNING_ORDER = ["teacher", "student", "RD", "CD", "RRD", "RRD-topK", "DE-RRD", "DE", "UnKD", "HTD"]
#: The protocols' configuration files, relative to the repository.
PROTOCOLS = {
    "recbole": "properties/experiments/protocol_recbole.yaml",
    "paper": "properties/experiments/protocol_paper.yaml",
    "fixed": "properties/experiments/protocol_fixed_split.yaml",
}
#: RecBole's learner defaults: the student alone's reference trial.
STUDENT_DEFAULTS = {"learning_rate": 0.001, "weight_decay": 0.0}


def cell_key(method, size, seed, setting=None):
    """A cell's name; ``setting`` (a --tune trial's keys) is part of it."""
    key = f"{method}|{size}|{seed}"
    return key + "|" + setting_label(setting) if setting else key


def setting_label(setting):
    """``{'lambda_rrd': 0.003}`` -> ``lambda_rrd=0.003`` (sorted keys)."""
    return ",".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in sorted(setting.items()))


def plugin_defaults(method, backbone="BPR"):
    """The plugin's (and RecBole's learner) defaults of ``method``'s keys with the student
    ``backbone``: the distiller's YAML, then its backbone's layer over it where it has one
    (``properties/model/DERRD/NeuMF.yaml``: a NeuMF student's own weights), as a run gets them."""
    from recbole_derrd.settings.defaults import model_layers

    defaults = dict(STUDENT_DEFAULTS)
    if method in DISTILLERS:
        for path in model_layers(DISTILLERS[method][0], backbone):
            with open(path) as handle:
                defaults.update(yaml.safe_load(handle) or {})
    return defaults


def is_plugin_default(method, setting, backbone="BPR"):
    """Whether a trial's setting is what the plugin (or RecBole, for the student) uses by
    default for those keys with the student ``backbone``."""
    defaults = plugin_defaults(method, backbone)
    return all(defaults.get(key) == value for key, value in setting.items())


def default_weights(method, backbone="BPR"):
    """The setting of ``method``'s cell at the plugin's defaults with the student ``backbone``:
    its loss weights, explicit (``{}`` for the teacher and the student alone, which have none)."""
    defaults = plugin_defaults(method, backbone)
    return {key: defaults[key] for key in WEIGHT_KEYS.get(method, [])}


def is_automatic(setting):
    """Whether a cell's weights were chosen by the plugin's search (``auto``)."""
    return "auto" in setting.values()


def cells_method_settings(cells):
    """The --method_settings a table's cells were run with: per distiller, the keys other than
    its weights and the learner's (and the search's trial length) that all its cells share."""
    ignored = set(LEARNER_KEYS) | set(SHORT_TRIALS)
    shared = {}
    for cell in cells.values():
        method = cell["method"]
        if method not in DISTILLERS:
            continue
        extra = {key: value for key, value in cell["setting"].items()
                 if key not in ignored and key not in WEIGHT_KEYS.get(method, [])}
        shared[method] = extra if method not in shared else {
            key: value for key, value in shared[method].items() if extra.get(key) == value}
    return {method: settings for method, settings in shared.items() if settings}
