"""The card catalogue (``fixtures/cards.yaml``), validated on load."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import yaml

from simulator.cards.card import CardProfile, CatalogueError

#: libyaml's safe loader when PyYAML was built with it (about twice as fast), else Python's.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Catalogue(Mapping[str, CardProfile]):
    """Card profiles by key, as listed in a catalogue file."""

    def __init__(self, profiles: dict[str, CardProfile]) -> None:
        self._profiles = profiles

    def __getitem__(self, key: str) -> CardProfile:
        try:
            return self._profiles[key]
        except KeyError:
            known = ", ".join(sorted(self._profiles))
            raise KeyError(f"no card {key!r} in the catalogue (known: {known})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._profiles)

    def __len__(self) -> int:
        return len(self._profiles)

    def by_pan(self, pan: str) -> CardProfile | None:
        return next((p for p in self._profiles.values() if p.pan == pan), None)

    @classmethod
    def from_text(cls, text: str, source: str = "<text>") -> Catalogue:
        try:
            data = yaml.load(text, Loader=SAFE_LOADER)
        except yaml.YAMLError as exc:
            raise CatalogueError(f"{source}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("cards"), dict):
            raise CatalogueError(f"{source}: expected a top-level 'cards:' mapping")
        profiles: dict[str, CardProfile] = {}
        owners: dict[str, str] = {}
        for key, entry in data["cards"].items():
            try:
                profile = CardProfile.from_dict(str(key), entry)
            except CatalogueError as exc:
                raise CatalogueError(f"{source}: {exc}") from None
            if profile.pan in owners:  # the issuer finds a card by its number
                other = owners[profile.pan]
                raise CatalogueError(f"{source}: card {key!r}: field 'pan' is also card {other!r}")
            owners[profile.pan] = profile.key
            profiles[profile.key] = profile
        return cls(profiles)

    @classmethod
    def load(cls, path: Path) -> Catalogue:
        return cls.from_text(path.read_text(encoding="utf-8"), str(path))
