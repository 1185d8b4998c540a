"""Config parsing and validation: JSON, the reference's printed-dict format, and every rule."""
import json
import re
import warnings

import pytest

from udd_core.config import AEConfig, ConfigError, load_config, parse_config

REF_TEXT = """{'block_ker': [5, 5], 'drop': [0.1, 0.1], 'block_size_in': [[3, 25, 20], [20, 15, 10]],
'block_size_out': [[5, 10, 15], [15, 20, 3]], 'latent_size': 3, 'latent_ker': 3,
'latent_opad': (1, 1), 'out_pad': [(1, 1), (1, 1)]}"""


def test_reference_text_and_json_give_the_same_config():
    c = parse_config(REF_TEXT)
    assert c.block_size_in == ((3, 25, 20), (20, 15, 10))
    assert c.latent_opad == (1, 1) and c.out_pad == ((1, 1), (1, 1))
    assert parse_config(c.to_json()) == c
    assert json.loads(c.to_json())["latent_opad"] == [1, 1]


def test_laten_opad_spelling_is_accepted(tiny_config):
    tiny_config["laten_opad"] = tiny_config.pop("latent_opad")
    assert parse_config(tiny_config).latent_opad == 1


def test_both_spellings_at_once_is_an_error(tiny_config):
    tiny_config["laten_opad"] = 0
    with pytest.raises(ConfigError, match="latent_opad"):
        parse_config(tiny_config)


@pytest.mark.parametrize("text", [
    "__import__('os').system('touch /tmp/udd_pwned')",
    "{'block_ker': __import__('os').getcwd()}",
    "[x for x in ()]",
    "open('/etc/passwd').read()",
])
def test_code_is_never_run(text, tmp_path):
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    assert "\n" not in str(e.value)
    import os
    assert not os.path.exists("/tmp/udd_pwned")


def test_a_typo_is_named_by_its_position_not_called_code():
    with pytest.raises(ConfigError) as e:
        parse_config('{"block_ker": [3, 3],\n "drop": oops}')
    msg = str(e.value)
    assert "not valid JSON (Expecting value at line 2, column 10)" in msg
    assert "`oops` at line 2, column 10 is not a number, string, list or dict" in msg and "code" not in msg
    with pytest.raises(ConfigError, match="never closed at line 1") as e:
        parse_config('{"block_ker": [3, 3]')  # cut short: the parser's own reason
    assert "<unknown>" not in str(e.value)  # QA sweep 10: Python's file name for a string was shown


def test_unknown_keys_are_kept_and_warned(tiny_config):
    tiny_config["comment"] = "mine"
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        c = parse_config(tiny_config)
    assert c.extra == {"comment": "mine"}
    assert any("comment" in str(x.message) for x in w)
    assert parse_config(c.to_dict()).extra == {"comment": "mine"}


@pytest.mark.parametrize("edit, field", [
    (lambda c: c.pop("latent_ker"), "latent_ker"),
    (lambda c: c.update(drop=[0.0]), "drop"),
    (lambda c: c.update(out_pad=[1]), "out_pad"),
    (lambda c: c["block_size_in"][1].__setitem__(0, 5), "block_size_in[1][0]"),
    (lambda c: c["block_size_out"][1].__setitem__(0, 3), "block_size_out[1][0]"),
    (lambda c: c["block_size_out"][1].__setitem__(2, 3), "block_size_out[1][2]"),
    (lambda c: c.update(out_pad=[1, 2]), "out_pad[1]"),
    (lambda c: c.update(latent_opad=[0, 2]), "latent_opad"),
    (lambda c: c.update(latent_opad=-1), "latent_opad"),
    (lambda c: c.update(latent_size=0), "latent_size"),
    (lambda c: c.update(block_ker=[3, 0]), "block_ker[1]"),
    (lambda c: c.update(block_ker=[3, "3"]), "block_ker[1]"),
    (lambda c: c.update(block_ker=[3, True]), "block_ker[1]"),
    (lambda c: c.update(drop=[0.0, 1.0]), "drop[1]"),
    (lambda c: c.update(drop=[-0.1, 0.0]), "drop[0]"),
    (lambda c: c["block_size_in"].__setitem__(0, [1, 4]), "block_size_in[0]"),
    (lambda c: c["block_size_in"][0].__setitem__(1, -4), "block_size_in[0][1]"),
    (lambda c: c.update(block_ker=[], drop=[], block_size_in=[], block_size_out=[], out_pad=[]), "block_ker"),
    (lambda c: c.update(out_pad=[[1, 1, 1], 1]), "out_pad[0]"),
    (lambda c: c.update(block_size_in=5), "block_size_in"),
    (lambda c: c["block_size_in"][1].__setitem__(1, 10**9), "block_size_in[1][1]"),
    (lambda c: c.update(latent_ker=1001), "latent_ker"),
])
def test_validation_names_the_field_in_one_line(tiny_config, edit, field):
    edit(tiny_config)
    with pytest.raises(ConfigError) as e:
        parse_config(tiny_config)
    assert e.value.field == field
    assert str(e.value).startswith(field + ":")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text", ["", "   ", "[1, 2]", "42", "{'a': 1", "\xff\xfe", "{" * 5000 + "}" * 5000])
def test_garbage_text_is_one_line_error(text):
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    assert "\n" not in str(e.value)


def test_a_huge_integer_is_named_without_pythons_hint(tiny_config):
    """QA sweep 15b: a 5001-digit latent_size repeated Python's "use sys.set_int_max_str_digits()" hint twice."""
    text = json.dumps({**tiny_config, "latent_size": 7}).replace(": 7", ": " + "9" * 5001)
    with pytest.raises(ConfigError, match=r"^config: holds an integer of more than 4300 digits$"):
        parse_config(text)


def test_load_config_names_the_file(tmp_path, tiny_config):
    p = tmp_path / "AE_config.txt"
    p.write_text(str(tiny_config))  # the reference writes print(dict)
    assert isinstance(load_config(p), AEConfig)
    bad = tmp_path / "bad.json"
    bad.write_text('{"block_ker": [3]}')
    with pytest.raises(ConfigError, match=f"^{re.escape(str(bad))}: "):  # as given, not only its name (QA sweep 7)
        load_config(bad)
    with pytest.raises(ConfigError, match="missing.json"):
        load_config(tmp_path / "missing.json")


def test_config_is_immutable(tiny_config):
    c = parse_config(tiny_config)
    with pytest.raises(Exception):
        c.latent_size = 3  # type: ignore[misc]
    fixed = c.with_padding(0, (0, 0))
    assert fixed.latent_opad == 0 and c.latent_opad == 1


def test_config_text_is_json_one_field_a_line_and_noting_warnings_keeps_the_messages(tiny_config):
    from udd_core.config import config_text, noting_warnings

    text = config_text(tiny_config | {"comment": "mine"})
    assert json.loads(text) == tiny_config | {"comment": "mine"} and len(text.splitlines()) == len(tiny_config) + 3
    config, notes = noting_warnings(lambda: parse_config(text))
    assert config.extra == {"comment": "mine"} and notes == ["config: unknown keys kept but unused: comment"]
    assert noting_warnings(lambda: parse_config(tiny_config))[1] == []
    # QA sweep 19a: a misspelt optional field was listed as unknown, unlike a misspelt required one
    notes = noting_warnings(lambda: parse_config(tiny_config | {"ouput": "softmax", "comment": "x"}))[1]
    assert notes == ["config: unknown keys kept but unused: ouput (a misspelling of 'output'?), comment"]
    given = noting_warnings(lambda: parse_config(tiny_config | {"output": "linear", "ouput": "softmax"}))[1]
    assert given == ["config: unknown keys kept but unused: ouput"]  # output is there: no misspelling of it


def test_a_missing_field_names_the_unknown_key_that_looks_like_it():
    """QA sweep 8: a typo ("latnet_size") only said "latent_size: missing field"; the unknown key is named too."""
    from udd_core.presets import model_presets

    cfg = json.loads(model_presets()["wafer-26"].config.to_json())
    cfg["latnet_size"] = cfg.pop("latent_size")
    with pytest.raises(ConfigError, match=r"^latent_size: missing field; the config has 'latnet_size': a misspelling"):
        parse_config(cfg)
    del cfg["latnet_size"]
    cfg["colour"] = 1  # nothing like the missing field: not offered
    with pytest.raises(ConfigError) as e:
        parse_config(cfg)
    assert str(e.value) == "latent_size: missing field"
