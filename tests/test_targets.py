import math

import pytest
import torch

from pplevelset.errors import UserInputError
from pplevelset.targets import parse_target, target_label

DIGITS = [str(i) for i in range(10)]


def test_ambiguous_is_uniform():
    assert torch.allclose(parse_target("ambiguous", DIGITS), torch.full((10,), 0.1))


def test_named_classes_split_the_rest_evenly():
    target = parse_target("1=0.46,7=0.46", DIGITS)
    assert target[1] == pytest.approx(0.46) and target[7] == pytest.approx(0.46)
    assert torch.allclose(target[[0, 2, 3, 4, 5, 6, 8, 9]], torch.full((8,), 0.01), atol=1e-7)
    assert float(target.sum()) == pytest.approx(1.0, abs=1e-6)


def test_named_binary_and_full_vector():
    assert parse_target("house=0.999", ["house", "rocket"]).tolist() == pytest.approx([0.999, 0.001])
    assert parse_target("0.25, 0.75", ["a", "b"]).tolist() == pytest.approx([0.25, 0.75])
    assert parse_target([0.2, 0.8], ["a", "b"]).tolist() == pytest.approx([0.2, 0.8])


def test_vector_within_tolerance_is_renormalised():
    target = parse_target("0.5000004,0.5", ["a", "b"])
    assert float(target.sum()) == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("0.5,0.3,0.2", "3 entries"),
        ("0,1", "must be > 0"),
        ("-0.5,1.5", "must be > 0"),
        ("nan,0.5", "finite"),
        ("0.5,0.6", "sums to"),
        ("dog=0.5", "unknown class"),
        ("house=1.0", "leaves"),
        ("house=0.5,0.5", "mixes"),
        ("house=0.5,house=0.4", "twice"),
        ("house=abc", "not a number"),
        ("", "empty"),
    ],
)
def test_bad_targets_say_what_is_wrong(spec, message):
    with pytest.raises(UserInputError, match=message):
        parse_target(spec, ["house", "rocket"])


def test_label_is_filesystem_safe():
    assert target_label("1=0.46,7=0.46") == "1=0.46_7=0.46"
    assert "/" not in target_label("a/b")
    assert not math.isnan(float(parse_target("a=0.3,b=0.7", ["a", "b"])[0]))
