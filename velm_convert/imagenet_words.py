"""The ImageNet class -> caption word table a grounded bundle carries (``classes.json``), built at export.

The EfficientNet-Lite0 weights carry an ImageNet-1k classifier (``_fc``); its 1000 classes are the
ILSVRC-2012 WordNet ids, sorted.  Both lists come from Debian packages, read at export, never at run time:

- ``darknet``: ``data/imagenet.labels.list`` (the first 1000 lines are the ILSVRC-2012 wnids) and
  ``imagenet.shortnames.list`` (their names, on the same lines);
- ``wordnet-base``: WordNet 3.0's ``data.noun``, whose lines give each synset's lemmas and its hypernyms
  (``@``, ``@i``).

A class's caption word is the first lemma met while climbing its hypernyms (breadth first, at most
``MAX_DEPTH`` steps) that is in the bundle's vocabulary and is not too general to say (``GENERAL``):
Egyptian cat -> cat, macaw -> parrot, sorrel -> horse, every dog breed -> dog.  ``OVERRIDES`` are the
reviewed exceptions, where climbing finds a wrong or useless word (ImageNet's "kite" is a bird of prey;
"lion" climbs to "big cat"; "espresso" finds no everyday word).  A class whose word is not in the
vocabulary gets none: a tag may only ask the decoder for a word it can say.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

from velm_edge.errors import VelmError

DARKNET = Path("/usr/share/darknet/data")
WORDNET = Path("/usr/share/wordnet/data.noun")
WORDNET_COPYRIGHT = Path("/usr/share/doc/wordnet-base/copyright")
CLASSES = 1000
MAX_DEPTH = 6
# Lemmas too general for a caption to name (climbing reaches them from everything).
GENERAL = frozenset("""
entity object whole thing artifact artefact instrumentality device container structure organism being animal
living matter substance covering equipment implement commodity article ware unit part piece group area region
place location way line form shape top side end front back body system material creature person vertebrate
mammal placental carnivore invertebrate arthropod vascular herb produce nutriment
vessel conveyance wheeled craft protective clothing garment consumer goods merchandise product decoration
establishment building facility construction machine mechanism apparatus tool utensil furniture furnishing
instrument good goods wind game food vehicle work shop dish wear control computer cover site spot patch head arm
string pick jack bank roll ear paper ride course beam case mini post fabric litter rubber disk bars carrier gear cream
shade home chest toy wood bar light tank barrier beverage fruit stick board mask pool monument
fixing setup stuff support upright
""".split())
# Basic-level words a caption says instead of a more specific one met first (a terrier, a hound, a poodle: a dog).
PREFERRED = ("dog", "cat", "bird", "fish", "snake", "monkey", "bear", "horse", "spider", "butterfly", "insect")
# Reviewed: class wnid -> word (None: no word, whatever climbing finds).
OVERRIDES: dict[str, str | None] = {
    "n01608432": "bird",  # kite, the bird of prey (not a toy kite)
    "n02129165": None, "n02129604": None, "n02128385": None, "n02128757": None,  # lion, tiger, leopard, snow leopard
    "n02128925": None, "n02130308": None,  # jaguar, cheetah: "big cat", not a cat
    "n07920052": "coffee",  # espresso
    "n03785016": "motorcycle",  # moped
    "n03791053": "motorcycle",  # motor scooter
    "n03792782": "bike",  # mountain bike
    "n02835271": "bike",  # bicycle-built-for-two
    "n04482393": "bike",  # tricycle
    "n03063599": "cup",  # coffee mug
    "n07930864": "cup",  # cup
    "n04560804": "bottle",  # water jug
    "n03642806": "laptop",  # laptop
    "n03832673": "laptop",  # notebook (the computer)
    "n04404412": "tv",  # television
    "n03782006": "tv",  # monitor
    "n04152593": "tv",  # screen
    "n04344873": "couch",  # studio couch
    "n03201208": "table",  # dining table
    "n04447861": "toilet",  # toilet seat
    "n04070727": "refrigerator",  # refrigerator
    "n03761084": "microwave",  # microwave
    "n04442312": "toaster",  # toaster
    "n04254680": "ball",  # soccer ball
    "n02799071": "ball",  # baseball
    "n02802426": "ball",  # basketball
    "n04409515": "ball",  # tennis ball
    "n04540053": "ball",  # volleyball
    "n04039381": "racket",  # racket
    "n03379051": "football",  # football helmet
    "n02504458": "elephant", "n02504013": "elephant", "n01871265": "elephant",  # African, Indian elephant, tusker
    "n02391049": "zebra",
    "n02403003": "cow",  # ox
    "n02412080": "sheep",  # ram
    "n04037443": "car",  # racer
    "n03100240": "car",  # convertible
    "n02814533": "car",  # beach wagon
    "n03594945": "car",  # jeep
    "n03770679": "van",  # minivan
    "n04285008": "car",  # sports car
    "n02930766": "taxi",  # cab
    "n04487081": "bus",  # trolleybus
    "n04146614": "bus",  # school bus
    "n03769881": "bus",  # minibus
    "n02701002": "ambulance",
    "n03345487": "truck",  # fire engine
    "n03417042": "truck",  # garbage truck
    "n03930630": "truck",  # pickup
    "n04461696": "truck",  # tow truck
    "n04467665": "truck",  # trailer truck
    "n03796401": "truck",  # moving van
    "n04612504": "boat",  # yawl
    "n02981792": "boat",  # catamaran
    "n03344393": "boat",  # fireboat
    "n03662601": "boat",  # lifeboat
    "n04273569": "boat",  # speedboat
    "n03447447": "boat",  # gondola
    "n02951358": "canoe",
    "n04147183": "sailboat",  # schooner
    "n04483307": "sailboat",  # trimaran
    "n02690373": "airplane",  # airliner
    "n04552348": "airplane",  # warplane
    "n04592741": "airplane",  # wing
    "n03272562": "train",  # electric locomotive
    "n03393912": "train",  # freight car
    "n03895866": "train",  # passenger car
    "n04310018": "train",  # steam locomotive
    "n04335435": "train",  # streetcar
    "n07747607": "orange", "n07753592": "banana", "n07714990": "broccoli", "n07697537": "hotdog",
    "n07873807": "pizza", "n07697313": "sandwich",  # cheeseburger
    "n04591713": "wine",  # wine bottle
    "n07892512": "wine",  # red wine
    "n03891251": "bench",  # park bench
    "n04099969": "chair",  # rocking chair
    "n03376595": "chair",  # folding chair
    "n04429376": "chair",  # throne
    "n02791124": "chair",  # barber chair
    "n03388549": "bed",  # four-poster
    "n03125729": "bed",  # cradle
    "n03131574": "bed",  # crib
    "n04553703": "sink",  # washbasin
    "n03085013": "keyboard",  # computer keyboard
    "n04074963": "remote",  # remote control
    "n03793489": "mouse",  # computer mouse
    "n02992529": "phone",  # cellular telephone
    "n03196217": "clock",  # digital clock
    "n02708093": "clock",  # analog clock
    "n04548280": "clock",  # wall clock
    "n04522168": "vase",
    "n04399382": "teddy",  # teddy bear
    "n02769748": "backpack",
    "n04507155": "umbrella",
    "n02948072": "candle",
    "n04141076": "saxophone",  # sax
    "n03141823": "crutch",
    "n03000134": "fence",  # chainlink fence
    "n04604644": "fence",  # worm fence
    "n03930313": "fence",  # picket fence
    "n09428293": "beach",  # seashore
    "n09332890": "lake",  # lakeside
    "n09193705": "mountain",  # alp
    "n09468604": "valley",
    "n09246464": "cliff",
    "n09472597": "volcano",
    "n04347754": "submarine",
    "n03599486": "cart",  # jinrikisha
    "n04371774": "swing",
    "n04228054": "skis",  # ski
    # Found when COCO's words joined the vocabulary: climbing reached a word nobody would say of the photo.
    "n03188531": None,  # diaper ("napkin")
    "n03924679": "printer",  # photocopier
    "n04355933": "sunglasses",  # sunglass ("lens")
    "n03452741": "piano",  # grand piano ("grand")
    "n04515003": "piano",  # upright
    "n03733131": "pole",  # maypole
    "n12620546": None,  # hip, the rose hip
    "n07932039": "drink",  # eggnog ("alcohol")
    "n03400231": "pan",  # frying pan ("skillet")
}


class WordTableError(VelmError, FileNotFoundError):
    """The class list or WordNet is missing: the Debian packages that hold them are named."""


def imagenet_classes(darknet: Path = DARKNET) -> list[tuple[str, str]]:
    """The 1000 ILSVRC-2012 classes in the weights' order: [(wnid, name)], wnids sorted."""
    labels, names = darknet / "imagenet.labels.list", darknet / "imagenet.shortnames.list"
    if not labels.is_file() or not names.is_file():
        raise WordTableError(f"{labels}: missing; the ImageNet class list comes from Debian's darknet package "
                             f"(apt-get install darknet)")
    ids = labels.read_text().split("\n")[:CLASSES]
    text = names.read_text().split("\n")[:CLASSES]
    return sorted(zip(ids, text))


def read_wordnet(path: Path = WORDNET) -> dict[str, tuple[list[str], list[str]]]:
    """offset -> (lemmas, hypernym offsets) from WordNet's data.noun."""
    if not path.is_file():
        raise WordTableError(f"{path}: missing; WordNet 3.0 comes from Debian's wordnet-base package "
                             f"(apt-get install wordnet-base)")
    synsets = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):  # the licence header
            continue
        fields = line.split(" | ")[0].split()
        offset, n_words = fields[0], int(fields[3], 16)
        lemmas = [fields[4 + 2 * i].lower() for i in range(n_words)]
        rest = fields[4 + 2 * n_words:]
        n_ptr = int(rest[0])
        hypernyms = [rest[1 + 4 * i + 1] for i in range(n_ptr) if rest[1 + 4 * i] in ("@", "@i")]
        synsets[offset] = (lemmas, hypernyms)
    return synsets


def caption_word(wnid: str, synsets: dict, vocabulary: set[str]) -> str | None:
    """The class's word: the override, else the first sayable lemma up its hypernyms, else None."""
    if wnid in OVERRIDES:
        word = OVERRIDES[wnid]
        return word if word in vocabulary else None
    ancestors = _closure(wnid[1:], synsets)
    for word in PREFERRED:
        if word in vocabulary and any(word in synsets[o][0] for o in ancestors):
            return word
    queue, seen = deque([(wnid[1:], 0)]), set()
    while queue:
        offset, depth = queue.popleft()
        if offset in seen or offset not in synsets:
            continue
        seen.add(offset)
        lemmas, hypernyms = synsets[offset]
        for lemma in lemmas:
            if lemma in vocabulary and lemma not in GENERAL:
                return lemma
        if depth < MAX_DEPTH:
            queue.extend((h, depth + 1) for h in hypernyms)
    return None


def _closure(offset: str, synsets: dict) -> set[str]:
    """The synset and all its hypernyms, up to MAX_DEPTH + 2 steps."""
    found, frontier = set(), {offset}
    for _ in range(MAX_DEPTH + 3):
        frontier = {o for o in frontier if o in synsets and o not in found}
        found |= frontier
        frontier = {h for o in frontier for h in synsets[o][1]}
    return found


def licence_notice(path: Path = WORDNET_COPYRIGHT) -> str:
    """WordNet 3.0's licence, which must travel with anything made from it."""
    text = path.read_text() if path.is_file() else ""
    start, end = text.find("Permission to use"), text.find("Files: debian")
    body = text[start:end] if start >= 0 else ""
    lines = [ln.strip() for ln in body.splitlines()]
    notice = " ".join(ln for ln in lines if ln and ln not in (".",))
    return notice or ("WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. Used under the "
                      "WordNet 3.0 licence (wordnet.princeton.edu/license-and-commercial-use).")


def word_table(vocabulary: set[str], darknet: Path = DARKNET, wordnet: Path = WORDNET) -> dict:
    """``classes.json``: the 1000 classes (wnid, label, word or None) with where they came from."""
    synsets = read_wordnet(wordnet)
    classes = [{"id": wnid, "label": name, "word": caption_word(wnid, synsets, vocabulary)}
               for wnid, name in imagenet_classes(darknet)]
    return {
        "what": "ImageNet-1k (ILSVRC 2012) classes of the vision graph's 'classes' output, in its order, each with "
                "the caption word it grounds (null: none the vocabulary can say)",
        "sources": {
            "classes": "ILSVRC-2012 WordNet ids and names from Debian's darknet package (data/imagenet.labels.list, "
                       "imagenet.shortnames.list; the first 1000, sorted)",
            "words": f"WordNet 3.0 hypernyms (Debian's wordnet-base, data.noun), climbed at most {MAX_DEPTH} steps to "
                     f"a vocabulary word, with {len(OVERRIDES)} reviewed overrides (velm_convert/imagenet_words.py)",
        },
        "wordnet_licence": licence_notice(),
        "classes": classes,
    }
