from dataclasses import dataclass

import pytest

from segad.params import known_params


@dataclass
class Settings:
    depth: int = 1
    rate: float = 0.5


def test_known_keys_pass_as_a_new_dict():
    given = {"depth": 3}
    checked = known_params(Settings, given, "brf")
    assert checked == {"depth": 3} and checked is not given
    assert known_params(Settings, None, "brf") == {}


def test_unknown_keys_are_named_with_their_section():
    with pytest.raises(ValueError, match=r"unknown brf parameters \['dpeth'\]"):
        known_params(Settings, {"dpeth": 3, "rate": 0.1}, "brf")
