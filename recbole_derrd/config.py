"""
recbole_derrd.config
####################
The plugin's configurator: RecBole's :class:`recbole.config.Config` with

- model names resolved plugin-first (``DERRD``, ...), then among RecBole's built-ins;
- this plugin's YAML defaults (``properties/model/<Model>.yaml``, shipped as package data)
  layered over RecBole's, and, for a distiller, the student backbone's own RecBole defaults
  beneath them;
- ``parse_command_line=False`` for configurations built inside a run (the teacher's), so the
  student's ``--key=value`` overrides cannot leak into them (RecBole's Config parses
  ``sys.argv`` every time);
- the model's own key validation run once, when the configuration is built.
"""

import os
from pathlib import Path

from recbole.config import Config as RecBoleConfig

from recbole_derrd.utils import get_model


def plugin_properties_file(*parts):
    """Path of a YAML file shipped in ``properties/`` (None if absent).

    Installed, ``properties/`` is package data inside the package (``recbole_derrd/properties``);
    in a source checkout (editable install, worktree) it is the folder beside the package.
    """
    package_dir = Path(__file__).resolve().parent
    for root in (package_dir / "properties", package_dir.parent / "properties"):
        path = root.joinpath(*parts)
        if path.is_file():
            return str(path)
    return None


class Config(RecBoleConfig):
    r"""RecBole's Config, plugin-aware.

    Args:
        model (str or class): a plugin model name (``DERRD``), a RecBole model name, or a class.
        dataset (str): dataset name.
        config_file_list (list of str): YAML files.
        config_dict (dict): parameters.
        parse_command_line (bool): read ``--key=value`` from ``sys.argv`` (as RecBole does).
            Configurations built inside a run pass False.
    """

    def __init__(
        self,
        model=None,
        dataset=None,
        config_file_list=None,
        config_dict=None,
        parse_command_line=True,
    ):
        self.parse_command_line = parse_command_line
        super().__init__(model, dataset, config_file_list, config_dict)
        check = getattr(self.model_class, "check_config", None)
        if check is not None:
            check(self)

    def _load_cmd_line(self):
        if not self.parse_command_line:
            return dict()
        return super()._load_cmd_line()

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
        if isinstance(model, str):
            model = get_model(model)
        return super()._get_model_and_dataset(model, dataset)

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        for yaml_file in self._plugin_yaml_files(model, model_class):
            self._update_internal_config_dict(yaml_file)

    def _plugin_yaml_files(self, model, model_class):
        """The plugin's YAML layers for ``model``, lowest priority first."""
        layers = getattr(model_class, "config_layers", None)
        if layers is not None:
            return layers(self)
        own = plugin_properties_file("model", f"{model}.yaml")
        return [own] if own else []

    def _set_default_parameters(self):
        super()._set_default_parameters()
        # A distiller trains with its student backbone's input type (pairwise for BPR,
        # pointwise for NeuMF); RecBole reads it from the class, so the class resolves it.
        resolve = getattr(self.model_class, "resolve_input_type", None)
        if resolve is not None:
            self.final_config_dict["MODEL_INPUT_TYPE"] = resolve(self.final_config_dict)


#: Keys a final configuration derives from the others (or from the process), never set by users.
DERIVED_KEYS = {
    "model",
    "dataset",
    "data_path",
    "device",
    "single_spec",
    "local_rank",
    "world_size",
    "nproc",
    "ip",
    "port",
    "offset",
    "MODEL_TYPE",
    "MODEL_INPUT_TYPE",
    "eval_type",
    "valid_metric_bigger",
    "valid_neg_sample_args",
    "test_neg_sample_args",
}


def data_path_root(config):
    """The ``data_path`` a user gave (RecBole appends the dataset name to it)."""
    return os.path.dirname(os.path.normpath(config["data_path"]))


def config_from_plain(plain, dataset=None, overrides=None):
    """Rebuild a :class:`Config` from the plain final configuration stored in a checkpoint.

    Args:
        plain (dict): a checkpoint's ``config``.
        dataset (str): dataset name (default: the stored one).
        overrides (dict): values that replace the stored ones (device, paths...).
    """
    parameters = {key: value for key, value in plain.items() if key not in DERIVED_KEYS}
    parameters["data_path"] = data_path_root(plain)
    parameters.update(overrides or {})
    return Config(
        model=plain["model"],
        dataset=dataset or plain["dataset"],
        config_dict=parameters,
        parse_command_line=False,
    )
