"""Facts per provider kind are written once and agree with the catalog's real base URLs."""

from urllib.parse import urlsplit

from llmpulse.core.catalog import CATALOG
from llmpulse.core.provider_kinds import AUTH_STYLES, KIND_FACTS, KINDS


def test_every_kind_has_its_facts_and_nothing_else_does() -> None:
    assert set(KIND_FACTS) == set(KINDS)
    assert all(facts.auth in AUTH_STYLES for facts in KIND_FACTS.values())


def test_catalog_specs_take_auth_and_probe_path_from_their_kind() -> None:
    for spec in CATALOG:
        facts = KIND_FACTS[spec.kind]
        assert (spec.auth, spec.probe_path) == (facts.auth, facts.probe_path), spec.id


def test_base_prefix_is_the_path_of_the_real_base_url() -> None:
    # The simulator lays each fake out under base_prefix; the real provider's URL must say the same.
    for spec in CATALOG:
        if spec.base_url:  # Azure's endpoint is per resource
            assert urlsplit(spec.base_url).path.rstrip("/") == KIND_FACTS[spec.kind].base_prefix, spec.id
