"""Does a caption name what the photo shows?  COCO's 80 object categories and the everyday words for them.

``CATEGORIES`` maps each of MS-COCO's 80 categories to the words and phrases captions use for it ("cat":
cat, kitten, kitty; "tv": tv, television; "person": man, woman, child, skier, ...).  Plurals are added by
``forms``; a phrase ("teddy bear", "fire hydrant") is matched before its words, so a teddy bear is not a
bear.  Words that mostly mean something else in captions are left out on purpose: "orange" (a colour far
more often than the fruit: only "oranges" counts), "glass" alone (windows), "bag", "vehicle", "computer".

The measure (``mention_scores``): an image *shows* a category when at least ``agree`` of its reference
captions name it; a caption's mentions are scored against that set, summed over images (precision,
recall, F1), and an image's *subject is named* when the caption names at least one category it shows.
The first human caption of each coco-sample photo against the other four gives precision 0.85 and recall
0.78 (the data README measured 0.87 / 0.78 with its own word list): the ceiling a model is compared with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

from velm_edge.runtime.tokenizer import normalize

CATEGORIES: dict[str, tuple[str, ...]] = {
    "person": ("person", "people", "persons", "man", "men", "woman", "women", "boy", "girl", "child", "children",
               "kid", "baby", "toddler", "guy", "lady", "ladies", "gentleman", "gentlemen", "player", "skier",
               "surfer", "skateboarder", "snowboarder", "rider", "biker", "cyclist", "bicyclist", "crowd",
               "family", "couple", "teenager", "teen", "adult", "batter", "catcher", "umpire", "pitcher", "chef",
               "officer", "policeman", "worker", "tourist", "pedestrian", "spectator", "student", "someone",
               "athlete", "soldier", "cowboy", "groom", "bride", "son", "daughter", "mother", "father", "infant"),
    "bicycle": ("bicycle", "bike", "cycle"),
    "car": ("car", "taxi", "cab", "suv", "sedan", "jeep", "minivan"),
    "motorcycle": ("motorcycle", "motorbike", "motor bike", "dirt bike", "scooter", "moped", "motor scooter"),
    "airplane": ("airplane", "plane", "jet", "aircraft", "airliner", "aeroplane", "jetliner"),
    "bus": ("bus", "busses", "double decker"),
    "train": ("train", "locomotive", "tram", "trolley", "subway"),
    "truck": ("truck", "pickup", "lorry", "firetruck", "fire truck", "tow truck"),
    "boat": ("boat", "ship", "sailboat", "canoe", "kayak", "yacht", "ferry", "raft", "rowboat"),
    "traffic light": ("traffic light", "stop light", "stoplight", "traffic signal"),
    "fire hydrant": ("fire hydrant", "hydrant"),
    "stop sign": ("stop sign",),
    "parking meter": ("parking meter", "meter"),
    "bench": ("bench",),
    "bird": ("bird", "parrot", "pigeon", "seagull", "gull", "duck", "goose", "geese", "swan", "owl", "eagle",
             "hawk", "chicken", "hen", "rooster", "chick", "macaw", "penguin", "sparrow", "crow", "finch"),
    "cat": ("cat", "kitten", "kitty"),
    "dog": ("dog", "puppy", "pup", "doggy"),
    "horse": ("horse", "pony", "foal", "stallion", "mare"),
    "sheep": ("sheep", "lamb", "ram"),
    "cow": ("cow", "cattle", "bull", "calf", "calves", "ox", "oxen"),
    "elephant": ("elephant",),
    "bear": ("bear", "grizzly"),
    "zebra": ("zebra",),
    "giraffe": ("giraffe",),
    "backpack": ("backpack", "back pack", "rucksack"),
    "umbrella": ("umbrella", "parasol"),
    "handbag": ("handbag", "purse"),
    "tie": ("tie", "necktie"),
    "suitcase": ("suitcase", "luggage", "baggage"),
    "frisbee": ("frisbee",),
    "skis": ("ski", "skis"),
    "snowboard": ("snowboard",),
    "sports ball": ("ball", "soccer ball", "tennis ball", "football", "basketball", "volleyball"),
    "kite": ("kite",),
    "baseball bat": ("baseball bat", "bat"),
    "baseball glove": ("baseball glove", "glove", "mitt"),
    "skateboard": ("skateboard", "skate board"),
    "surfboard": ("surfboard", "surf board"),
    "tennis racket": ("tennis racket", "racket", "racquet"),
    "bottle": ("bottle",),
    "wine glass": ("wine glass", "wineglass", "glass of wine"),
    "cup": ("cup", "mug", "teacup", "coffee cup"),
    "fork": ("fork",),
    "knife": ("knife", "knives"),
    "spoon": ("spoon",),
    "bowl": ("bowl",),
    "banana": ("banana",),
    "apple": ("apple",),
    "sandwich": ("sandwich", "burger", "hamburger", "sub"),
    "orange": ("oranges",),
    "broccoli": ("broccoli",),
    "carrot": ("carrot",),
    "hot dog": ("hot dog", "hotdog"),
    "pizza": ("pizza",),
    "donut": ("donut", "doughnut"),
    "cake": ("cake", "cupcake"),
    "chair": ("chair",),
    "couch": ("couch", "sofa", "loveseat"),
    "potted plant": ("potted plant", "plant", "houseplant"),
    "bed": ("bed",),
    "dining table": ("table", "dining table", "desk"),
    "toilet": ("toilet",),
    "tv": ("tv", "television", "tvs"),
    "laptop": ("laptop",),
    "mouse": ("mouse", "computer mouse"),
    "remote": ("remote", "remote control", "controller"),
    "keyboard": ("keyboard",),
    "cell phone": ("phone", "cellphone", "cell phone", "smartphone", "mobile phone", "telephone"),
    "microwave": ("microwave",),
    "oven": ("oven", "stove"),
    "toaster": ("toaster",),
    "sink": ("sink",),
    "refrigerator": ("refrigerator", "fridge"),
    "book": ("book",),
    "clock": ("clock",),
    "vase": ("vase",),
    "scissors": ("scissors",),
    "teddy bear": ("teddy bear", "teddy", "stuffed animal"),
    "hair drier": ("hair drier", "hair dryer", "blow dryer"),
    "toothbrush": ("toothbrush",),
}

_IRREGULAR = {"man": "men", "woman": "women", "child": "children", "person": "people", "mouse": "mice",
              "knife": "knives", "calf": "calves", "goose": "geese", "sheep": "sheep", "fish": "fish",
              "scissors": "scissors", "skis": "skis", "broccoli": "broccoli", "luggage": "luggage",
              "baggage": "baggage", "cattle": "cattle", "family": "families", "lady": "ladies", "baby": "babies",
              "kitty": "kitties", "doggy": "doggies", "pony": "ponies", "teddy": "teddies", "ferry": "ferries",
              "trolley": "trolleys", "gentleman": "gentlemen", "bus": "buses", "ox": "oxen"}


def plural(word: str) -> str:
    """The plural of a category word or phrase (its last word): dog -> dogs, bench -> benches, lady -> ladies."""
    *head, last = word.split(" ")
    if last in _IRREGULAR:
        last = _IRREGULAR[last]
    elif last.endswith(("s", "x", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last += "s"
    return " ".join([*head, last])


def forms(category: str) -> tuple[str, ...]:
    """Every word or phrase that names ``category``: its listed words and their plurals."""
    words = CATEGORIES[category]
    return tuple(dict.fromkeys(w for word in words for w in (word, plural(word))))


@lru_cache(maxsize=1)
def phrase_table() -> dict[tuple[str, ...], str]:
    """Normalized phrase -> category, for every form of every category."""
    table: dict[tuple[str, ...], str] = {}
    for category in CATEGORIES:
        for form in forms(category):
            key = tuple(normalize(form))
            if table.setdefault(key, category) != category:
                raise ValueError(f"{form!r} names both {table[key]!r} and {category!r}")
    return table


NOT_A_PERSON_BEFORE = {"couple": {"of"}}  # "a couple of pizzas"
KIN = {"baby", "babies", "mother", "mothers", "adult", "adults", "family", "families", "couple", "couples"}


def mentioned(caption: str) -> set[str]:
    """The categories a caption names; the longest phrase at each position wins ("teddy bear" over "bear").
    A person word that describes something else is not a person: "a couple of pizzas", and a kin word before
    another category ("baby elephant", "mother giraffe", "a family of ducks" is still a family of ducks)."""
    return set(counted(caption))


def counted(caption: str) -> dict[str, int]:
    """``mentioned`` with how many of each the caption names: 2 for a plural ("two dogs", "people"), else 1."""
    table, plurals = phrase_table(), _plural_phrases()
    longest = max(len(k) for k in table)
    words, found, i = normalize(caption), {}, 0

    def at(i: int) -> tuple[str | None, int]:
        for n in range(min(longest, len(words) - i), 0, -1):
            category = table.get(tuple(words[i:i + n]))
            if category is not None:
                return category, n
        return None, 1

    while i < len(words):
        category, n = at(i)
        if category == "person" and n == 1 and words[i] in KIN:
            following = words[i + 1] if i + 1 < len(words) else ""
            if following in NOT_A_PERSON_BEFORE.get(words[i], ()) or at(i + 1)[0] not in (None, "person"):
                category = None
            elif following == "of" and at(i + 2)[0] not in (None, "person"):  # "a family of ducks"
                category = None
        if category is not None:
            many = tuple(words[i:i + n]) in plurals or (i > 0 and words[i - 1] in MANY)
            found[category] = max(found.get(category, 0), 2 if many else 1)
        i += n
    return found


MANY = {"two", "three", "four", "five", "six", "several", "many", "group", "groups", "crowd", "team", "pair"}


@lru_cache(maxsize=1)
def _plural_phrases() -> set[tuple[str, ...]]:
    """The normalized phrases that name more than one ("dogs", "people"; not "sheep", whose plural is itself)."""
    return {tuple(normalize(plural(word))) for words in CATEGORIES.values() for word in words
            if plural(word) != word}


def shown(references: Iterable[str], agree: int = 2) -> set[str]:
    """The categories that at least ``agree`` of the reference captions name."""
    counts: dict[str, int] = {}
    for ref in references:
        for category in mentioned(ref):
            counts[category] = counts.get(category, 0) + 1
    return {c for c, n in counts.items() if n >= agree}


def mention_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]], agree: int = 2) -> dict[str, float]:
    """Mention precision, recall and F1 over all images, the share of images whose subject is named (the caption
    names at least one category the references agree on, among images that show one), and the precision and
    recall of saying "person" (a person word) per image."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} captions but {len(refs)} reference lists")
    return set_scores([mentioned(h) for h in hyps], refs, agree)


def set_scores(predicted: Sequence[set[str]], refs: Sequence[Sequence[str]], agree: int = 2) -> dict[str, float]:
    """``mention_scores`` for sets of categories already found (a detector's labels, or a caption's mentions)."""
    hit = said = truth = named = with_subject = 0
    person = {"said": 0, "shown": 0, "both": 0}
    for m, rs in zip(predicted, refs):
        g = shown(rs, agree)
        hit, said, truth = hit + len(m & g), said + len(m), truth + len(g)
        if g:
            with_subject += 1
            named += bool(m & g)
        person["said"] += "person" in m
        person["shown"] += "person" in g
        person["both"] += "person" in m and "person" in g
    p = hit / said if said else 0.0
    r = hit / truth if truth else 0.0
    return {"mention_precision": p, "mention_recall": r, "mention_f1": 2 * p * r / (p + r) if p + r else 0.0,
            "subject_named": named / with_subject if with_subject else 0.0,
            "person_precision": person["both"] / person["said"] if person["said"] else 0.0,
            "person_recall": person["both"] / person["shown"] if person["shown"] else 0.0}
