"""The generic Registry: one signature (decorator and call forms), one name rule, one replace
rule, one unknown-name error with a close-match suggestion, the Mapping protocol, and the
listing of every kind."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping

import pytest

import metabridge
from metabridge.registry import LazyEntry, Registry, UnknownNameError, describe_all, normalize_name


@pytest.fixture
def widgets() -> Iterator[Registry[object]]:
    registry: Registry[object] = Registry("widget", "test-widgets", register_hint="tests.register_widget")
    yield registry
    Registry._all.pop("test-widgets", None)


def spinner() -> str:
    """Spins once.

    More text that describe() leaves out."""
    return "spin"


class Gear:
    """A gear with teeth."""

    name = "gear"


def test_decorator_and_call_forms_return_the_object(widgets: Registry[object]) -> None:
    assert widgets.register("spin", spinner) is spinner
    deco = widgets.register("Spin-Twice")(spinner)  # the decorator returns what it decorates
    assert deco is spinner
    assert widgets.register()(Gear) is Gear  # the name from obj.name

    @widgets.register()
    def wheel() -> None:  # the name from __name__
        """Rolls."""

    assert widgets.names() == ["gear", "spin", "spin-twice", "wheel"]  # stored lower-case, sorted
    assert widgets.get("gear") is Gear and widgets["wheel"] is wheel


def test_names_ignore_case_and_dash_versus_underscore(widgets: Registry[object]) -> None:
    widgets.register("mini_thing", spinner)
    assert "MINI-THING" in widgets and widgets["Mini-Thing"] is spinner
    assert widgets.canonical("MINI-thing") == "mini_thing"
    assert normalize_name(" A-b_C ") == "a_b_c"
    with pytest.raises(ValueError, match="already registered.*replace=True"):
        widgets.register("Mini-Thing", Gear)  # the same name under the rule
    for bad in ("", "two words", " "):
        with pytest.raises(ValueError, match="non-empty string without spaces"):
            widgets.register(bad, spinner)
    with pytest.raises(TypeError, match="must be callable"):
        widgets.register("x", 3)
    assert "x" not in widgets


def test_replace_rule_and_unregister_restores_what_was_replaced(widgets: Registry[object]) -> None:
    widgets.register("spin", spinner)
    widgets.register("spin", spinner)  # the same object again: a no-op
    with pytest.raises(ValueError, match="widget name 'spin' is already registered to .*spinner; pass replace=True"):
        widgets.register("spin", Gear)
    assert widgets.register("spin", Gear, replace=True) is Gear and widgets["spin"] is Gear
    assert widgets.unregister("spin") is Gear and widgets["spin"] is spinner  # the replaced one is back
    assert widgets.unregister("SPIN") is spinner and "spin" not in widgets
    with pytest.raises(ValueError, match="widget 'spin' is not registered"):
        widgets.unregister("spin")


def test_builtins_can_be_replaced_but_not_removed(widgets: Registry[object]) -> None:
    widgets.register("identity", functools.partial(metabridge.registry.normalize_name))  # metabridge's own
    with pytest.raises(ValueError, match="built-in widget, which cannot be removed"):
        widgets.unregister("identity")
    widgets.register("identity", spinner, replace=True)
    assert widgets.unregister("identity") is spinner and widgets.is_builtin("identity")


def test_unknown_name_is_one_line_with_a_suggestion(widgets: Registry[object]) -> None:
    widgets.register("spinner", spinner)
    widgets.register()(Gear)
    with pytest.raises(UnknownNameError) as err:
        widgets.get("spiner")
    text = str(err.value)
    assert text == (
        "unknown widget 'spiner'; did you mean 'spinner'? Known: gear, spinner "
        "(register your own with tests.register_widget)."
    )
    assert (
        isinstance(err.value, KeyError) and isinstance(err.value, ValueError) and err.value.suggestions[0] == "spinner"
    )
    with pytest.raises(ValueError, match="unknown widget 'zzz'; Known: gear, spinner"):
        widgets["zzz"]
    assert widgets.get("zzz", None) is None  # Mapping.get with a default
    assert 3 not in widgets  # type: ignore[comparison-overlap]


def test_mapping_protocol(widgets: Registry[object]) -> None:
    widgets.register("b", spinner)
    widgets.register("a", Gear)
    assert isinstance(widgets, Mapping) and len(widgets) == 2
    assert list(widgets) == ["a", "b"] and dict(widgets) == {"a": Gear, "b": spinner}
    with pytest.raises(TypeError):
        widgets["c"] = spinner  # type: ignore[index]  # read-only: register() is the way in


def test_describe_lazy_entries_and_aliases(widgets: Registry[object]) -> None:
    aliased: Registry[object] = Registry(
        "widget",
        "test-widgets",
        register_hint="tests.register_widget",
        aliases={"spinnerette": "spinner"},
        unknown_hint=", or a path",
    )
    aliased.register("spinner", spinner)
    assert aliased["spinnerette"] is spinner and aliased.names() == ["spinner"]
    assert aliased.describe("spinner") == "Spins once."  # the first paragraph
    aliased.register_lazy("normalize", "metabridge.registry", "normalize_name")
    aliased.register_lazy(
        "absent", "metabridge_no_such_module", "x", extra="nothing", description="needs a module that is not there"
    )
    assert isinstance(aliased.lazy_entry("normalize"), LazyEntry)
    assert aliased["normalize"] is normalize_name and aliased.describe("normalize").startswith("The key two names")
    assert aliased.describe("absent") == "needs a module that is not there"
    with pytest.raises(ImportError, match=r"pip install 'metabridge\[nothing\]'"):
        aliased["absent"]
    with pytest.raises(ValueError, match="unknown widget 'q';.*, or a path\\.$"):
        aliased.get("q")
    assert describe_all("test-widgets")[-1] == ("spinner", "Spins once.")


def test_all_registries_lists_every_kind() -> None:
    import metabridge.rl  # noqa: F401  (registers the RL kinds)

    registries = Registry.all_registries()
    expected = {
        "algorithms",
        "models",
        "datasets",
        "weightings",
        "multitask-models",
        "multitask-benchmarks",
        "envs",
        "rl-algorithms",
    }
    assert expected <= set(registries)
    for plural in expected:
        registry = registries[plural]
        assert registry.plural == plural and registry.names() == sorted(registry.names()) and registry.names()
    assert "meta-learning" in dict(describe_all("algorithms"))["maml"]
    with pytest.raises(ValueError, match="unknown kind 'algorithm'"):
        describe_all("algorithm")


def test_every_kind_keeps_its_old_call_forms() -> None:
    import functools

    from metabridge.data.registry import DATASETS, register_dataset
    from metabridge.multitask.weighting import Weighting
    from metabridge.multitask.weighting.registry import WEIGHTINGS, register_weighting, registered_defaults
    from metabridge.rl.envs.registry import ENVS, register_env

    def loader(root: object, split: str, download: bool = False) -> None:
        """A test loader."""

    try:
        assert register_dataset("test-old-form", loader) is loader  # (name, loader): already the one signature
        assert DATASETS["TEST_OLD_FORM"] is loader
        with pytest.warns(DeprecationWarning, match="replace="):
            register_env("test-old-env", spinner, overwrite=True)
        assert ENVS["test-old-env"] is spinner

        class Scaled(Weighting):
            """Scaled losses."""

            name = "test_scaled"

            def __init__(self, num_tasks: int, scale: float = 1.0) -> None:
                super().__init__(num_tasks)

        with pytest.warns(DeprecationWarning, match="functools.partial"):
            register_weighting("test_scaled_2", scale=2.0)(Scaled)
        assert (
            registered_defaults("test_scaled_2") == {"scale": 2.0} and WEIGHTINGS["test_scaled_2"].name == "test_scaled"
        )
        register_weighting("test_scaled_3", functools.partial(Scaled, scale=3.0))  # the one signature
        assert registered_defaults("test_scaled_3") == {"scale": 3.0}
        assert WEIGHTINGS.describe("test_scaled_3") == "Scaled losses (scale=3.0)."
    finally:
        for registry, name in (
            (DATASETS, "test-old-form"),
            (ENVS, "test-old-env"),
            (WEIGHTINGS, "test_scaled_2"),
            (WEIGHTINGS, "test_scaled_3"),
        ):
            if name in registry:
                registry.unregister(name)
