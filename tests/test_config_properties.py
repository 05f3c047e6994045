"""Property-based tests of the configuration (hypothesis): whatever value a plugin key is
given, the run either passes the checks and trains, or stops with the plugin's own error type
(:class:`recbole_derrd.errors.UserError`) before any data is loaded; never an exception from
inside RecBole or from training.

The suite runs a fixed, small set of examples (40 configurations, 25 one-epoch runs, about half
a minute). To search further: ``PROPERTY_RANDOM=1 PROPERTY_EXAMPLES_CONFIG=2000
PROPERTY_EXAMPLES_RUN=200 python -m pytest tests/test_config_properties.py``."""

import os

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from recbole.trainer import Trainer  # noqa: E402

from recbole_derrd import Config, run_recbole_derrd  # noqa: E402
from recbole_derrd.config import plugin_properties_file  # noqa: E402
from recbole_derrd.errors import UserError  # noqa: E402


def yaml_keys(*parts):
    path = plugin_properties_file(*parts)
    if path is None:
        return set()
    with open(path, encoding="utf-8") as handle:
        return set(yaml.safe_load(handle) or {})


def model_keys(model):
    """Every key of the plugin's YAML layers of a distiller (whatever the student backbone)."""
    return sorted(
        yaml_keys("overall.yaml")
        | yaml_keys("distiller.yaml")
        | yaml_keys("model", f"{model}.yaml")
        | set().union(*(yaml_keys("distiller", f"{student}.yaml") for student in ("LightGCN", "NeuMF")))
        | yaml_keys("model", model, "NeuMF.yaml")
    )


#: Every plugin key, by distiller.
PLUGIN_KEYS = {model: model_keys(model) for model in ("DERRD", "RD", "CD", "HTD")}

#: Fast settings of the competitors, on top of the tests' FAST ones.
FAST_COMPETITORS = {"rd_topk": 5, "rd_rank_samples": 10, "cd_topn": 50}

#: Names the plugin's keys take, valid for some key and not for others.
NAMES = ["mean", "sum", "gumbel", "attention", "single", "single_large", "relaxed", "full",
         "interesting_only", "embeddings", "joint", "hidden", "BPR", "NeuMF", "LightGCN",
         "SASRec", "DERRD", "nccl", "gloo", "auto", "dense", "sparse", ""]

#: Any value: wrong types, out-of-range numbers, strings, lists, dicts, None.
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NAMES),
    st.text(max_size=6),
    st.lists(st.one_of(st.integers(-2, 64), st.text(max_size=3)), max_size=3),
    st.dictionaries(st.sampled_from(["epochs", "embedding_size", "x"]), st.integers(-2, 4),
                    max_size=2),
)

def yaml_defaults(*parts):
    path = plugin_properties_file(*parts)
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


#: The distillers' defaults (BPR student), by key.
DEFAULTS = {**yaml_defaults("overall.yaml"), **yaml_defaults("distiller.yaml"),
            **yaml_defaults("model", "DERRD.yaml"), **yaml_defaults("model", "RD.yaml"),
            **yaml_defaults("model", "CD.yaml"), **yaml_defaults("model", "HTD.yaml")}

#: Values of any type near the boundaries of the checks.
NEAR_VALUE = st.one_of(
    st.booleans(),
    st.integers(min_value=-1, max_value=60),
    st.floats(min_value=-1.0, max_value=50.0, allow_nan=False),
    st.sampled_from(NAMES + [None, 1e-12, 1e3]),
)


#: The names some keys accept (README's key table).
CHOICES = {
    "student_model": ["BPR", "LightGCN", "NeuMF"],
    "loss_reduction": ["mean", "sum"],
    "de_selection": ["gumbel", "attention", "single", "single_large"],
    "de_layer": [None, "embeddings", "joint", "hidden"],
    "de_routing": ["auto", "dense", "sparse"],
    "rrd_mode": ["relaxed", "full", "interesting_only"],
}


def near_value(key):
    """Mostly values of the key's own type near the boundaries of its checks (so that many
    examples pass them and train), sometimes a value of any type."""
    default = DEFAULTS.get(key)
    if key in CHOICES:
        typed = st.sampled_from(CHOICES[key])
    elif isinstance(default, bool):
        typed = st.booleans()
    elif isinstance(default, int):
        typed = st.integers(min_value=-1, max_value=60)
    elif isinstance(default, float):
        typed = st.one_of(st.sampled_from([0.0, 1e-12, 1e-3, 0.5, 1.0]),
                          st.floats(min_value=-0.5, max_value=50.0, allow_nan=False))
    else:
        typed = st.one_of(st.none(), st.sampled_from(NAMES), st.integers(min_value=0, max_value=5))
    return st.one_of(typed, typed, typed, typed, NEAR_VALUE)


#: Keys that a one-epoch run with the session's teacher exercises (the on-demand teacher's
#: keys would train a teacher per example; their values are covered by the first test).
RUN_KEYS = {
    model: [key for key in keys
            if not key.startswith("teacher_") and key not in ("dist_backend", "trust_checkpoint")]
    for model, keys in PLUGIN_KEYS.items()
}

HYPOTHESIS_SETTINGS = dict(
    deadline=None,
    derandomize=not os.environ.get("PROPERTY_RANDOM"),  # the same examples in every suite run
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES_CONFIG", 40)), **HYPOTHESIS_SETTINGS)
@given(data=st.data())
def test_any_value_of_any_key_is_accepted_or_refused_with_the_plugins_error(
    workdir, fast_config, data
):
    """Building the configuration (no data loaded) either succeeds or raises a UserError."""
    model = data.draw(st.sampled_from(sorted(PLUGIN_KEYS)), label="model")
    overrides = data.draw(
        st.dictionaries(st.sampled_from(PLUGIN_KEYS[model]), ANY_VALUE, min_size=1, max_size=3),
        label="overrides",
    )
    config_dict = fast_config(checkpoint_dir=str(workdir / "saved"), **overrides)
    try:
        Config(model, "ml-100k", config_dict=config_dict)
    except UserError:
        pass
    assert not (workdir / "saved").exists()


@settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES_RUN", 25)), **HYPOTHESIS_SETTINGS)
@given(data=st.data())
def test_values_that_pass_the_checks_train(workdir, fast_config, teacher_checkpoint, data):
    """A configuration is refused (UserError) before training, or it trains one tiny epoch:
    never an exception from inside training."""
    model = data.draw(st.sampled_from(["DERRD", "DERRD", "RD", "CD"]), label="model")
    keys = data.draw(st.lists(st.sampled_from(RUN_KEYS[model]), min_size=1, max_size=2, unique=True))
    overrides = {key: data.draw(near_value(key), label=key) for key in keys}
    config_dict = fast_config(checkpoint_dir=str(workdir / "saved"), epochs=1,
                              teacher_checkpoint=teacher_checkpoint, **FAST_COMPETITORS)
    config_dict.update(overrides)
    try:
        Config(model, "ml-100k", config_dict=dict(config_dict))
    except UserError:
        return  # refused before any data is loaded
    trained = []
    train_epoch = Trainer._train_epoch

    def recording(self, *args, **kwargs):
        trained.append(True)
        return train_epoch(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "_train_epoch", recording)
        try:
            result = run_recbole_derrd(model, "ml-100k", config_dict=config_dict, saved=False)
        except UserError:
            # a check against the data or the teacher (rrd_topn, de_layer), before training
            assert not trained
            return
    assert trained and result["test_result"]
