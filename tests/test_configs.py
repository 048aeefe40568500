"""Every config group option of every command composes; the task groups are per command."""

from pathlib import Path

import pytest
import scoresde.conf
from hydra import compose, initialize_config_module
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

CONF = Path(scoresde.conf.__file__).parent
# command -> (primary config, its own group dirs besides the shared root)
COMMANDS = {
    "train": ("config", CONF / "train"),
    "generate": ("generate", CONF / "generate"),
    "evaluate": ("evaluate", None),
    "features": ("features", None),
    "likelihood": ("likelihood", None),
}
SHARED = ("sde", "data", "model", "sampler", "logger", "training", "experiment")


def _options(root: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (root / group).glob("*.yaml"))


def _compose(name, overrides=()):
    with initialize_config_module(version_base="1.3", config_module="scoresde.conf"):
        return compose(name, overrides=list(overrides), return_hydra_config=True)


def _cases():
    for cmd, (name, own) in COMMANDS.items():
        yield cmd, name, []
        cfg = _compose(name)
        choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
        groups = [g for g in choices if not g.startswith("hydra/") and "@" not in g]
        for g in groups:
            root = own if own is not None and (own / g).is_dir() else CONF
            for opt in _options(root, g):
                yield cmd, name, [f"{g}={opt}"]


CASES = list(_cases())


def test_every_command_has_its_groups_listed():
    groups = {(c, o[0].split("=")[0]) for c, _, o in CASES if o}
    assert {("train", g) for g in SHARED} <= groups
    assert {("generate", "task"), ("generate", "sampler"), ("evaluate", "data")} <= groups
    assert len(CASES) > 60


@pytest.mark.parametrize(("cmd", "name", "overrides"), CASES, ids=lambda v: str(v))
def test_every_group_option_of_every_command_composes(cmd, name, overrides):
    cfg = _compose(name, overrides)
    plain = OmegaConf.to_container(cfg, resolve=False)
    assert plain  # composed, with the schema's keys where there is one
    if cmd == "generate":
        assert cfg.task.name in _options(CONF / "generate", "task") and "seed" in cfg
    if cmd == "train":
        assert cfg.task.name in _options(CONF / "train", "task")


def test_the_train_and_generate_task_groups_are_separate():
    train, gen = _options(CONF / "train", "task"), _options(CONF / "generate", "task")
    assert train == ["classifier", "score"] and "inpaint" in gen and not set(train) & set(gen)
    with pytest.raises(MissingConfigException) as e:
        _compose("config", ["task=inpaint"])
    assert sorted(e.value.options) == train
    with pytest.raises(MissingConfigException) as e:
        _compose("generate", ["task=score"])
    assert sorted(e.value.options) == gen


def test_the_schemas_type_the_command_lines_at_compose_time():
    with pytest.raises(Exception, match="seed"):
        _compose("generate", ["seed=x"])
    with pytest.raises(Exception, match="num_samples"):
        _compose("evaluate", ["num_samples=many"])
    with pytest.raises(Exception, match="typo"):
        _compose("generate", ["task=inpaint", "task.typo=1"])
    cfg = _compose("generate", ["task=sdedit", "task.guide=a.png"])
    assert (cfg.task.t0, cfg.task.n_per_guide, cfg.n) == (0.5, 1, 64)
