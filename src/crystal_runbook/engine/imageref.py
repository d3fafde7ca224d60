"""Container image references: whether one is valid and, when not, what is wrong in words.

A reference typed at 3 a.m. (`-p image=...`, `k8s.set_image`'s `images:`) must be refused
before anything runs, and the refusal must teach: "the repository 'MAIA' has upper-case
letters", not a 600-character regular expression. The grammar is the distribution/reference
one that registries and kubelets use::

    reference  := name [":" tag] ["@" digest]
    name       := [domain "/"] component ("/" component)*
    domain     := host-part ("." host-part)* [":" port]
    component  := [a-z0-9]+ (separator [a-z0-9]+)*      separator: "." "_" "__" "-"+
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := algorithm ":" hex (32 or more hex digits)

Plain strings only: the runbook parameters (engine) and the Kubernetes actions share it.
"""

from __future__ import annotations

import re

MAX_LENGTH = 255
"""The longest reference a registry accepts (the name part is capped at 255 too)."""

VALID_FORM = (
    "a valid reference is [registry[:port]/]repository[:tag][@sha256:digest] with a "
    "lower-case repository, e.g. registry.local/maia:1.5.1 or maia:1.5.1"
)
"""The sentence every refusal ends with."""

_HOST_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"{_HOST_PART}(?:\.{_HOST_PART})*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

REFERENCE = re.compile(rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?")
"""The whole grammar, for ``fullmatch``."""


def problem(image: str) -> str | None:
    """None when ``image`` is a valid reference, else what is wrong with it, in words.

    The sentence names the part at fault (registry, repository, tag or digest) and ends
    with what a valid reference looks like.
    """
    if len(image) <= MAX_LENGTH and REFERENCE.fullmatch(image):
        return None
    return f"{_reason(image)}; {VALID_FORM}"


def _reason(image: str) -> str:
    if not image:
        return "it is empty"
    if len(image) > MAX_LENGTH:
        return f"it is {len(image)} characters long, more than {MAX_LENGTH}"
    if any(ch.isspace() for ch in image):
        return "it contains a space or other whitespace"
    rest, at, digest = image.partition("@")
    if at:
        if "@" in digest:
            return "it has more than one '@'"
        if not re.fullmatch(_DIGEST, digest):
            return (
                f"the digest {digest[:80]!r} is not algorithm:hex "
                "(e.g. sha256: followed by 64 hexadecimal digits)"
            )
    name, tag = rest, None
    last_colon, last_slash = rest.rfind(":"), rest.rfind("/")
    if last_colon > last_slash:
        name, tag = rest[:last_colon], rest[last_colon + 1 :]
    if tag is not None:
        if not tag:
            return "the tag after ':' is empty"
        if not re.fullmatch(_TAG, tag):
            return (
                f"the tag {tag[:80]!r} must start with a letter, digit or '_' and hold only "
                "letters, digits, '_', '.' and '-' (at most 128 characters)"
            )
    parts = name.split("/")
    if (
        len(parts) > 1
        and re.fullmatch(_DOMAIN, parts[0])
        and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost")
    ):
        parts = parts[1:]
    elif len(parts) > 1 and ("." in parts[0] or ":" in parts[0]):
        return f"the registry {parts[0][:80]!r} is not a host name with an optional :port"
    return _repository_reason("/".join(parts))


def _repository_reason(repository: str) -> str:
    if not repository:
        return "it has no repository name"
    for component in repository.split("/"):
        if not component:
            return f"the repository {repository[:80]!r} has an empty part (a '/' too many)"
        if re.fullmatch(_COMPONENT, component):
            continue
        if component.lower() != component and re.fullmatch(_COMPONENT, component.lower()):
            return (
                f"the repository {repository[:80]!r} has upper-case letters; repositories "
                f"are lower case ({repository.lower()[:80]!r})"
            )
        if ":" in component:
            return (
                f"the repository {repository[:80]!r} contains ':': a reference has one ':' at "
                "most, before its tag"
            )
        bad = next((ch for ch in component if not re.fullmatch(r"[a-z0-9._-]", ch)), None)
        if bad is not None:
            return (
                f"the repository {repository[:80]!r} contains {bad!r}: use lower-case "
                "letters, digits and the separators '.', '_', '__' or '-'"
            )
        return (
            f"the repository part {component[:80]!r} must start and end with a lower-case "
            "letter or digit, with single '.' or '_' (or '__' or dashes) between them"
        )
    return "it does not follow the image reference grammar"
