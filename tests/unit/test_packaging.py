"""What ships: the extras, said the same way in pyproject.toml, gophermart.extras and the
noxfile; one version; documents whose links all resolve inside the repository."""

from __future__ import annotations

import ast
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import gophermart
from gophermart.extras import MODULES

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
#: The shared contract, where the workplace and CI lay it beside the clone.
SHARED_SPEC = ROOT.parent / "shared" / "SPEC.md"


def _name(requirement: str) -> str:
    """A requirement's distribution name, PEP 503-normalised (``swagger-ui-py>=23.9`` ->
    ``swagger-ui-py``; ``gophermart[http,postgres]`` -> ``gophermart``)."""
    bare = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", bare).lower()


def _distributions(extra: str) -> set[str]:
    """What ``gophermart[extra]`` adds to the core, its own extras' included."""
    found: set[str] = set()
    for requirement in PYPROJECT["optional-dependencies"][extra]:
        if _name(requirement) == "gophermart":
            inner = requirement.split("[", 1)[1].split("]", 1)[0]
            for other in inner.split(","):
                found |= _distributions(other.strip())
        else:
            found.add(_name(requirement))
    return found


#: Top-level modules that come with a distribution but are nothing anyone imports:
#: swagger-ui-py ships its own test suite as a package named ``test``.
STRAYS = {"test", "tests"}


def _modules_of(distributions: set[str]) -> set[str]:
    """The top-level modules those distributions install (all are, in the dev venv)."""
    return {
        module
        for module, owners in metadata.packages_distributions().items()
        if not module.startswith("_")
        and module not in STRAYS
        and {_name(owner) for owner in owners} & distributions
    }


@pytest.mark.parametrize("extra", sorted(MODULES))
def test_the_extras_table_names_what_each_extra_installs(extra: str) -> None:
    assert set(MODULES[extra]) == _modules_of(_distributions(extra))


def test_the_core_pulls_no_extra() -> None:
    core = {_name(requirement) for requirement in PYPROJECT["dependencies"]}
    assert not core & _distributions("server")


def test_the_bare_install_check_looks_for_every_server_package() -> None:
    noxfile = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    (listed,) = [
        ast.literal_eval(node.value)
        for node in noxfile.body
        if isinstance(node, ast.Assign)
        and any(getattr(target, "id", "") == "EXTRAS_ONLY" for target in node.targets)
    ]
    assert {_name(name) for name in listed} == _distributions("server")


def test_one_version_pyproject_s() -> None:
    assert gophermart.__version__ == PYPROJECT["version"] == metadata.version("gophermart")
    source = (ROOT / "src" / "gophermart").rglob("*.py")
    release = re.compile(r"__version__ = [\"']\d+\.\d+")
    assigned = [path for path in source if release.search(path.read_text(encoding="utf-8"))]
    assert not assigned, f"a second definition of the version: {assigned}"


# --- documents --------------------------------------------------------------------

DOCUMENTS = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")])
_FENCED = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(markdown: str) -> list[str]:
    """The targets of the inline links ``[text](target)`` outside code, but for those
    that leave the repository by design (a URL, an e-mail address) or stay on the page."""
    prose = _CODE.sub("", _FENCED.sub("", markdown))
    return [
        target
        for target in _LINK.findall(prose)
        if not re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) and not target.startswith("#")
    ]


def test_links_are_found() -> None:
    text = "[a](docs/x.md) `[b](no.md)` [c](https://e.org) [d](#top) [e](../y.md#part)"
    assert relative_links(text + "\n```\n[f](no.md)\n```\n") == ["docs/x.md", "../y.md#part"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(document: Path) -> None:
    broken = []
    for target in relative_links(document.read_text(encoding="utf-8")):
        path = (document.parent / target.split("#", 1)[0]).resolve()
        if not path.is_relative_to(ROOT) or not path.exists():
            broken.append(target)
    assert not broken, f"{document.name}: {broken}"


def test_the_contract_in_docs_is_the_shared_one() -> None:
    ours = (ROOT / "docs" / "SPEC.md").read_text(encoding="utf-8")
    if SHARED_SPEC.is_file():  # beside the clone in the workplace and in CI
        assert ours == SHARED_SPEC.read_text(encoding="utf-8")
    assert ours.startswith("#")
