"""The trigger registry is the one table of triggers: study files, stored problems, command-line flags and
the docs derive from it and from each trigger's declared parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from robust_hpo.attacks import TRIGGERS, BaseTrigger, ThreatModel, make_trigger, trigger_class
from robust_hpo.cli import build_parser
from robust_hpo.errors import ValidationError
from robust_hpo.study import AttackSettings

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("kind", list(TRIGGERS))
def test_each_trigger_declares_its_parameters(kind):
    cls = trigger_class(kind)
    assert issubclass(cls, BaseTrigger) and cls.kind == kind
    parameters = cls.parameters()
    assert parameters and "seed" not in parameters
    trigger = cls()
    assert trigger.describe() == {"kind": kind, **{n: p.default for n, p in parameters.items()}, "seed": 0}
    assert make_trigger(kind, {}, seed=3).describe()["seed"] == 3
    for name, parameter in parameters.items():
        assert parameter.help and parameter.constraints
        assert isinstance(parameter.default, parameter.type)


@pytest.mark.parametrize("kind", list(TRIGGERS))
def test_study_settings_take_exactly_the_declared_keys(kind):
    cls = TRIGGERS[kind]
    settings = AttackSettings.from_table({"trigger": kind, "fraction": 0.2})
    assert settings.params == {n: p.default for n, p in cls.parameters().items()}
    assert settings.threat_model().trigger.describe() == cls().describe()
    assert AttackSettings.from_table(settings.table()) == settings
    others = {n for k, c in TRIGGERS.items() if k != kind for n in c.parameters()} - set(cls.parameters())
    for name in others:
        with pytest.raises(ValidationError, match=f"attack.{name} applies to trigger"):
            AttackSettings.from_table({"trigger": kind, name: 1})
    with pytest.raises(ValidationError, match="unknown key 'attack.colour'"):
        AttackSettings.from_table({"trigger": kind, "colour": 1})


def test_command_line_flags_derive_from_the_registry():
    curves = build_parser()._subparsers._group_actions[0].choices["curves"]
    options = {o for action in curves._actions for o in action.option_strings}
    trigger = next(a for a in curves._actions if "--trigger" in a.option_strings)
    assert list(trigger.choices) == list(TRIGGERS)
    for cls in TRIGGERS.values():
        for name in cls.parameters():
            assert f"--{name.replace('_', '-')}" in options


def test_docs_name_every_trigger_and_parameter():
    attacks, plugin = (DOCS / "attacks.md").read_text(), (DOCS / "plugin.md").read_text()
    for kind, cls in TRIGGERS.items():
        assert f'"{kind}"' in attacks and f'"{kind}"' in plugin
        assert f"`{cls.__name__}(*, " in attacks
        for name in cls.parameters():
            assert f"{name}=" in attacks and f"{name} = " in plugin


def test_threat_names_come_from_the_trigger():
    assert ThreatModel(trigger=TRIGGERS["badnets"](size=4), fraction=0.05).name == "badnets-4px-bottom-right-5%"
    assert ThreatModel(trigger=TRIGGERS["invisible_grid"](epsilon=0.1), fraction=0.1).name == "grid-eps0.1-10%"
