"""
recbole_derrd.settings.defaults
###############################
The plugin's YAML defaults: where they live and how they layer, read by the configurator
(:class:`recbole_derrd.config.Config`) and by the export (:mod:`recbole_derrd.files.export`, which
strips the plugin's keys from an exported student).

Layers, lowest priority first, over RecBole's own defaults:

- ``overall.yaml``: keys every model has, baselines included;
- a RecBole model: ``model/<Model>.yaml`` where the plugin has one;
- a distiller: RecBole's defaults of its student backbone (``student_model``), the keys every
  distiller shares (``distiller.yaml``) and their defaults for that backbone
  (``distiller/<student>.yaml``, or the file its adapter's ``defaults_file`` names), the
  distiller's own defaults (``model/<Model>.yaml``, or the file its class's ``defaults_file``
  names), then its tuned defaults for that backbone (``<that file's stem>/<student>.yaml``).

Which distillers and backbones there are, and where their files are, is asked of the registry
(:mod:`recbole_derrd.settings.registry`): a distiller outside the package brings its own YAML.
"""

import glob
import os
from pathlib import Path

import yaml

import recbole

from recbole_derrd.settings.registry import backbones, distiller_class, distillers, registered_backbone


#: Where the plugin's defaults live: package data (``recbole_derrd/properties``), so a source
#: checkout and an install read the same files. Experiment configurations (``--config_files``)
#: are not defaults and stay in the repository's top-level ``properties/experiments``.
PROPERTIES_DIR = Path(__file__).resolve().parent.parent / "properties"


def plugin_properties_file(*parts):
    """Path of a YAML file of the plugin's defaults (None if absent)."""
    path = PROPERTIES_DIR.joinpath(*parts)
    return str(path) if path.is_file() else None


def recbole_model_yaml(model_name):
    """RecBole's own defaults file of a built-in model (None if it has none)."""
    path = os.path.join(os.path.dirname(recbole.__file__), "properties", "model", f"{model_name}.yaml")
    return path if os.path.isfile(path) else None


def existing(paths):
    return [str(path) for path in paths if path and os.path.isfile(path)]


def distiller_defaults_file(distiller):
    """The YAML defaults of the distiller named ``distiller``: the file its class names
    (``defaults_file``), by default ``properties/model/<Distiller>.yaml``."""
    declared = getattr(distiller_class(distiller), "defaults_file", None)
    return str(declared) if declared else str(PROPERTIES_DIR / "model" / f"{distiller}.yaml")


def backbone_defaults_file(student):
    """The YAML defaults of every distiller with the student backbone ``student``: the file its
    adapter names (``defaults_file``), by default ``properties/distiller/<Backbone>.yaml``."""
    declared = getattr(registered_backbone(student), "defaults_file", None)
    return str(declared) if declared else str(PROPERTIES_DIR / "distiller" / f"{student}.yaml")


def tuned_defaults_folder(distiller):
    """The folder of ``distiller``'s tuned defaults per backbone (``<defaults stem>/``)."""
    return os.path.splitext(distiller_defaults_file(distiller))[0]


def model_layers(distiller, student):
    """The YAML layers of ``distiller``'s own keys with the backbone ``student``, lowest priority
    first: its defaults, then its tuned defaults for that backbone where it has them."""
    own = distiller_defaults_file(distiller)
    return existing([own, os.path.join(tuned_defaults_folder(distiller), f"{student}.yaml")])


def distiller_layers(distiller, student):
    """The plugin's YAML layers of ``distiller`` with the backbone ``student``, lowest priority
    first (RecBole's defaults of the backbone not included)."""
    layers = existing([plugin_properties_file("distiller.yaml"), backbone_defaults_file(student)])
    return layers + model_layers(distiller, student)


def default_student(distiller, yaml_loader):
    """The ``student_model`` of ``distiller`` when the user sets none."""
    defaults = {}
    for path in existing([plugin_properties_file("distiller.yaml"), distiller_defaults_file(distiller)]):
        with open(path, encoding="utf-8") as handle:
            defaults.update(yaml.load(handle, Loader=yaml_loader) or {})
    return defaults.get("student_model")


def config_layers(model, external_config_dict, yaml_loader):
    """The plugin's YAML layers of ``model``, lowest priority first, for a configuration whose
    user-given keys are ``external_config_dict`` (they choose a distiller's backbone)."""
    layers = [plugin_properties_file("overall.yaml")]
    if distiller_class(model) is not None:
        student = external_config_dict.get("student_model", default_student(model, yaml_loader))
        layers += [recbole_model_yaml(student)] + distiller_layers(model, student)
    else:
        layers.append(plugin_properties_file("model", f"{model}.yaml"))
    return [layer for layer in layers if layer]


def plugin_default(config, key):
    """The plugin's default of ``key`` for ``config``'s model and student backbone (its YAML
    layers), whatever the user set; None if no layer sets it."""
    value = None
    for path in config_layers(config["model"], config.external_config_dict, config.yaml_loader):
        with open(path, encoding="utf-8") as handle:
            layer = yaml.load(handle, Loader=config.yaml_loader) or {}
        if key in layer:
            value = layer[key]
    return value


def yaml_keys(path):
    """Top-level keys of a YAML file (none for a missing file)."""
    if path is None:
        return set()
    with open(path, encoding="utf-8") as handle:
        return set(yaml.safe_load(handle) or {})


def recbole_overall_yaml():
    """RecBole's defaults of every model (``learning_rate``, ``epochs``, ``eval_args``...)."""
    return os.path.join(os.path.dirname(recbole.__file__), "properties", "overall.yaml")


def all_distiller_layers():
    """The plugin's YAML layers of every distiller registered, whatever its backbone."""
    layers = [plugin_properties_file("distiller.yaml")]
    layers += [backbone_defaults_file(adapter.model_name) for adapter in backbones()]
    for distiller in distillers():
        layers.append(distiller_defaults_file(distiller.__name__))
        layers += sorted(glob.glob(os.path.join(glob.escape(tuned_defaults_folder(distiller.__name__)), "*.yaml")))
    return existing(layers)


def distillation_keys(student):
    """Keys that only distillers read: those of any distiller's YAML layers (the teacher, the
    distillation losses, ``student_model``...) that are neither RecBole's keys of every model
    nor keys of RecBole's own defaults for the backbone ``student``. A distiller's
    configuration without them is its student's (:mod:`recbole_derrd.pipeline.student_alone`).

    Every distiller's keys, not only one's: the same settings given to DERRD and to RD (an
    ``rrd_topn`` RD never reads) leave the same student."""
    keys = set().union(*(yaml_keys(layer) for layer in all_distiller_layers()))
    return keys - yaml_keys(recbole_model_yaml(student)) - yaml_keys(recbole_overall_yaml())


def plugin_only_keys(distiller, student):
    """Keys a distiller's configuration has that its plain backbone does not: those of the
    plugin's YAML layers that are not keys of RecBole's own defaults for the backbone."""
    layers = [plugin_properties_file("overall.yaml")] + distiller_layers(distiller, student)
    keys = set().union(*(yaml_keys(layer) for layer in layers))
    return keys - yaml_keys(recbole_model_yaml(student))
