"""Image references: valid ones pass, and a bad one is refused saying in words what is wrong."""

from __future__ import annotations

import pytest

from crystal_runbook.engine import imageref, params
from crystal_runbook.engine.model import ParamSpec
from crystal_runbook.errors import ParamError


class TestValidReferences:
    """The distribution/reference grammar's valid forms are accepted."""

    @pytest.mark.parametrize(
        "image",
        [
            "maia",
            "maia:1.5.1",
            "registry.local/maia:1.5.1",
            "Registry.Local:5000/team/maia:v1-bad",
            "localhost:5000/maia",
            "maia@sha256:" + "a" * 64,
            "registry.local/maia:1.5.1@sha256:" + "0f" * 32,
            "a__b/c-d.e_f:TAG_1",
        ],
    )
    def test_accepted(self, image: str) -> None:
        """No problem is reported for a valid reference."""
        assert imageref.problem(image) is None


class TestWhatIsWrong:
    """Each kind of mistake is named, and every refusal shows what a valid reference is."""

    @pytest.mark.parametrize(
        ("image", "said"),
        [
            (
                "MAIA",
                "the repository 'MAIA' has upper-case letters; repositories are lower case ('maia')",
            ),
            ("registry.local/Maia:1", "the repository 'Maia' has upper-case letters"),
            ("maia::1", "the repository 'maia:' contains ':'"),
            (
                "-maia",
                "the repository part '-maia' must start and end with a lower-case letter or digit",
            ),
            ("a b", "it contains a space"),
            ("", "it is empty"),
            ("maia:", "the tag after ':' is empty"),
            ("maia:-x", "the tag '-x' must start with a letter, digit or '_'"),
            ("maia@sha256:zz", "the digest 'sha256:zz' is not algorithm:hex"),
            ("maia//x", "has an empty part"),
            ("ma$ia", "the repository 'ma$ia' contains '$'"),
            ("m" * 300, "it is 300 characters long, more than 255"),
        ],
    )
    def test_refused_in_words(self, image: str, said: str) -> None:
        """The reason names the faulty part and ends with the valid form and an example."""
        problem = imageref.problem(image)
        assert problem is not None
        assert said in problem
        assert problem.endswith(imageref.VALID_FORM)
        assert "e.g. registry.local/maia:1.5.1" in problem
        assert "(?:" not in problem

    def test_a_parameter_with_format_image(self) -> None:
        """`format: image` on a runbook parameter refuses with the words, as ParamError (exit 2)."""
        spec = {"image": ParamSpec(format="image")}
        assert params.resolve(spec, {"image": "registry.local/maia:2"}, runbook="r") == {
            "image": "registry.local/maia:2"
        }
        with pytest.raises(ParamError) as caught:
            params.resolve(spec, {"image": "MAIA"}, runbook="r")
        assert caught.value.exit_code == 2
        assert "'MAIA' is not a valid image reference: the repository 'MAIA' has upper-case" in str(
            caught.value
        )
