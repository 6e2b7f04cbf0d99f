"""Sample photographs that ship with velm-edge, so a new user sees the real model on real pictures.

Every one is public domain or CC0 (taken from scikit-image's sample data, resized to at most 384 pixels):

| file | what | by | terms |
|---|---|---|---|
| astronaut.jpg | astronaut Eileen Collins | NASA | public domain |
| cat.jpg | Chelsea the cat | Stefan van der Walt | CC0 |
| coffee.jpg | a cup of coffee | Rachel Michetti | CC0 |
| rocket.jpg | a Falcon 9 rocket on its pad | SpaceX | public domain |

``velm-edge caption --samples`` captions them; so does ``make demo`` before its live run.

May import: nothing from velm_edge (this room holds data and says where it is).
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).parent


def paths() -> list[Path]:
    """The sample photos, by name."""
    return sorted(FOLDER.glob("*.jpg"))
