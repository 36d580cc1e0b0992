"""Synthetic stand-ins for the two raw datasets, in their exact real schemas (demo preset, tests).

Both generators are pure functions of `(rows, seed)`: every random choice comes from a
`numpy.random.Generator(PCG64(seed))` (row-level draws, vectorised) and a `random.Random`
seeded from it (word-level choices, which are faster in plain Python). No global state is
touched, so the same arguments give the same frame, and `llmlab.io.write_parquet` then gives
the same bytes (with the same library versions).

IMDB recipe (`generate_imdb`), matched to the real 50k reviews (shared/data/README.md):
- Labels: exactly half positive, half negative (one extra positive for odd `rows`), shuffled.
- Length: a target length in characters is drawn from a lognormal fitted to the real file
  (log-mean 6.96, log-sd 0.65, clipped to 32..13,704); sentences are appended until the
  review reaches it, which gives mean ~1,300 and median ~970 characters like the real set.
- Text: an opening about how the reviewer came to the film, neutral plot sentences (title,
  genre, actors, characters with consistent pronouns, settings, twists), opinion sentences
  about aspects (acting, script, score, ...) and a conclusion; all slots come from phrase
  banks below. About 6% end with a "n/10" rating as in the real reviews.
- Paragraphs: `<br /><br />` between paragraphs in a share of reviews that grows with
  length (a logistic in log-length fitted to the real file: 26% of the shortest eighth,
  92% of the longest), 58% overall.
- Review kinds, so a bag-of-words model is good but not perfect: `clear` (most opinions
  agree with the label), `mixed` (pros and cons, the label follows the conclusion),
  `negated` ("not bad at all", "I didn't hate it", "wasn't exactly clever"), `sarcastic`
  (negative reviews in praising words: "Oh great, another masterpiece... I want my two
  hours back") and its mirror `guilty` (positive reviews in disparaging words: "it's trash,
  glorious trash"). A small share of reviews is written for the opposite label (label
  noise, as in the real data where text and star rating sometimes disagree).
- Duplicates: ~0.8% of rows repeat an earlier review of the same label verbatim (the real
  set has 418 duplicates in 50k), so class balance is kept.
With these settings TF-IDF + logistic regression scores roughly 85-93% on held-out rows.

The saiga recipe is documented at `generate_saiga`.
"""

# The phrase banks below hold whole natural-language sentences; wrapping them would hurt
# reading more than long lines do.
# ruff: noqa: E501

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from llmlab.schemas import IMDB_SCHEMA, OPUS_SCORE_RANGE, SAIGA_FULL_SCHEMA, contains_bad_phrase


def _rngs(seed: int) -> tuple[np.random.Generator, random.Random]:
    """One numpy generator for vectorised draws and a Python one seeded from it."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng, random.Random(int(rng.integers(0, 2**63 - 1)))


class _Slots(dict):
    """Template slots: fixed per document when set, otherwise a fresh draw from a bank.

    `str.format_map` calls `__missing__` for keys not set, so a template only pays for the
    slots it uses, and repeated sentences get varied words.
    """

    def __init__(self, r: random.Random, banks: dict[str, Sequence[str]]) -> None:
        super().__init__()
        self._r = r
        self._banks = banks

    def __missing__(self, key: str) -> str:
        bank = self._banks[key]
        return bank[int(self._r.random() * len(bank))]


# =======================================================================================
# IMDB
# =======================================================================================

# Fitted on shared/data/imdb_aclimdb.csv.gz: log(len) mean and sd, min and max length.
_IMDB_LOG_MEAN = 6.93
_IMDB_LOG_SD = 0.68
_IMDB_MIN_CHARS = 32
_IMDB_MAX_CHARS = 13_704
# P(review uses <br /><br /> paragraphs) = sigmoid(a * log(len) + b), fitted per length octile.
_BR_SLOPE = 1.6
_BR_INTERCEPT = -10.7
_RATING_SHARE = 0.06
_LABEL_NOISE = 0.05
_DUPLICATE_SHARE = 0.0084
# Review kinds per text polarity; `sarcastic` only carries negative text, `guilty` positive.
_KINDS_POS = {"clear": 0.55, "mixed": 0.25, "negated": 0.11, "guilty": 0.09}
_KINDS_NEG = {"clear": 0.55, "mixed": 0.25, "negated": 0.11, "sarcastic": 0.09}

_TITLE_ADJ = (
    "Silent", "Crimson", "Broken", "Last", "Hidden", "Endless", "Burning", "Midnight",
    "Savage", "Golden", "Forgotten", "Lonely", "Dark", "Wild", "Frozen", "Electric", "Lost",
    "Shattered", "Secret", "Distant", "Hollow", "Iron", "Velvet", "Bitter", "Fallen",
    "Restless", "Scarlet", "Quiet", "Final", "Deadly", "Sweet", "Blue", "Glass", "Paper",
)  # fmt: skip
_TITLE_NOUN = (
    "Harbor", "Witness", "Summer", "Highway", "Garden", "Promise", "Kingdom", "Stranger",
    "Mirror", "River", "Legacy", "Orchard", "Storm", "Frontier", "Carnival", "Circuit",
    "Inheritance", "Lighthouse", "Vendetta", "Reckoning", "Horizon", "Alibi", "Symphony",
    "Shadow", "Covenant", "Outpost", "Asylum", "Heart", "Season", "Passage", "Affair",
    "Valley", "Empire", "Code", "Ritual", "Runaway", "Ballad", "Contract", "Island", "Angel",
)  # fmt: skip
_TITLE_PLACE = (
    "Brooklyn", "Casablanca", "Dakota", "Venice", "Tangier", "Shanghai", "Kansas", "Memphis",
    "Marrakesh", "Nowhere", "the North", "the Bayou", "Palermo", "Havana", "Berlin",
    "Monterey", "the Moon", "Sunset Boulevard", "Little Italy", "Alcatraz",
)  # fmt: skip
_TITLE_PATTERNS = (
    "The {a} {n}", "{a} {n}", "{n} of {p}", "The {n} of {p}", "A {n} in {p}", "{a} {n} II",
    "The {n}", "{n}", "Return to {p}", "{a} in {p}", "Night of the {a} {n}", "{n} Road",
)  # fmt: skip
_FIRST_M = (
    "John", "Michael", "Robert", "James", "William", "David", "Richard", "Thomas", "Charles",
    "Daniel", "Paul", "Mark", "Steven", "Kevin", "Brian", "Gary", "Harvey", "Burt", "Gene",
    "Dennis", "Christopher", "Jack", "Anthony", "Vincent", "Peter", "Walter", "Henry", "Ray",
)  # fmt: skip
_FIRST_F = (
    "Mary", "Susan", "Linda", "Barbara", "Elizabeth", "Jennifer", "Maria", "Lisa", "Nancy",
    "Karen", "Betty", "Helen", "Sandra", "Diane", "Julia", "Meryl", "Faye", "Joan", "Sigourney",
    "Holly", "Grace", "Judy", "Audrey", "Catherine", "Isabella", "Rachel", "Claire", "Ingrid",
)  # fmt: skip
_LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Miller", "Davis", "Garcia", "Wilson", "Moore",
    "Taylor", "Anderson", "Thomas", "Jackson", "White", "Harris", "Martin", "Thompson",
    "Walsh", "Keaton", "Hartley", "Lowell", "Carradine", "Sutherland", "Brody", "Finch",
    "Dunaway", "Mason", "Harlow", "Bergman", "Caine", "Hackman", "Weaver", "Lange", "Pryce",
    "Oldman", "Quaid", "Reeve", "Stanwyck", "Holden", "Lancaster", "Nolte", "Redgrave",
)  # fmt: skip
_CAST_FIRST = _FIRST_M + _FIRST_F
_CHAR_M = (
    "Frank", "Tom", "Eddie", "Joe", "Sam", "Nick", "Harry", "Max", "Leo", "Billy", "Jake",
    "Victor", "Arthur", "Luke", "Marty", "Ben", "Walt", "Carl", "Dex", "Travis",
)  # fmt: skip
_CHAR_F = (
    "Annie", "Kate", "Laura", "Rose", "Emma", "Lucy", "Nora", "Sally", "Jenny", "Vera",
    "Alice", "Molly", "Dana", "Ellie", "Maggie", "Ruth", "Tess", "Iris", "June", "Carla",
)  # fmt: skip

_IMDB_BANKS: dict[str, Sequence[str]] = {
    "genre": (
        "horror film", "romantic comedy", "western", "thriller", "war drama", "sci-fi movie",
        "musical", "slasher", "period drama", "action movie", "animated feature",
        "documentary", "film noir", "family comedy", "psychological thriller",
        "made-for-TV movie", "costume drama", "kung fu movie", "disaster movie",
        "mockumentary", "crime drama", "coming-of-age story", "monster movie", "spy film",
    ),
    "genre_pl": (
        "horror films", "romantic comedies", "westerns", "thrillers", "war movies",
        "sci-fi movies", "musicals", "slashers", "period dramas", "action movies",
        "cartoons", "documentaries", "noirs", "comedies", "crime dramas", "monster movies",
    ),
    "relative": (
        "wife", "husband", "girlfriend", "boyfriend", "brother", "sister", "roommate", "dad",
        "mom", "best friend", "son", "daughter", "coworker", "grandmother",
    ),
    "festival": (
        "Toronto", "Sundance", "Berlin", "Cannes", "Tribeca", "Seattle", "Edinburgh",
        "local", "Telluride", "Venice",
    ),
    "ordinal": ("first", "second", "third", "fourth", "fifth", "latest", "last"),
    "decade": ("seventies", "eighties", "nineties"),
    "occupation": (
        "small-town sheriff", "retired boxer", "struggling musician", "night-shift nurse",
        "war veteran", "con artist", "schoolteacher", "journalist", "rookie cop",
        "widowed farmer", "mob accountant", "young lawyer", "stage performer",
        "marine biologist", "truck driver", "country singer", "private detective",
        "bank clerk", "college student", "washed-up actor", "single parent", "astronaut",
        "hotel manager", "art forger", "paramedic", "boxing trainer", "librarian",
    ),
    "event": (
        "discovers a body in the lake", "inherits a crumbling mansion", "witnesses a robbery",
        "falls for the wrong person", "gets caught up in a smuggling ring",
        "returns home after twenty years", "loses everything in one night",
        "agrees to do one last job", "wakes up with no memory of the night before",
        "takes a job at a remote lighthouse", "tries to save the family business",
        "finds a suitcase full of money", "receives a letter from a dead friend",
        "is accused of a crime nobody saw", "enters a dance contest", "adopts a stray dog",
        "starts hearing voices in an old house", "gets stranded in a desert town",
        "runs for mayor", "joins a traveling circus", "is sent back in time",
    ),
    "reaction": (
        "has to decide who to trust", "sets out to find the truth",
        "tries to keep it secret from everyone", "ends up on the run",
        "is forced to confront the past", "must team up with an old rival",
        "starts to question everything", "makes one bad decision after another",
        "slowly learns to let go",
    ),
    "setting": (
        "a snowed-in motel", "a dying mining town", "1950s Los Angeles", "a space station",
        "a boarding school", "the Louisiana swamps", "postwar Berlin", "a cruise ship",
        "a small fishing village", "New York in the seventies", "a run-down casino",
        "a hospital ward", "a farm in Iowa", "a submarine", "an abandoned amusement park",
        "a Tokyo nightclub", "the Scottish Highlands", "a prison in Texas",
    ),
    "twist": (
        "nothing is quite what it seems", "an old friend turns out to be behind it all",
        "the real villain is much closer to home", "the past catches up with everyone",
        "the whole town is hiding something", "the letter was never meant for them",
        "the money belongs to the wrong people", "the house has a history of its own",
    ),
    "aspect": (
        "acting", "script", "direction", "cinematography", "soundtrack", "pacing",
        "dialogue", "ending", "plot", "editing", "story", "camera work", "set design",
        "supporting cast", "climax", "screenplay", "lighting", "opening sequence",
        "final act", "humor", "writing", "casting", "music", "photography",
    ),
    "aspect_pl": (
        "special effects", "characters", "performances", "costumes", "action scenes",
        "jokes", "songs", "fight scenes", "locations", "visuals", "twists", "flashbacks",
    ),
    "pos_adj": (
        "excellent", "superb", "wonderful", "brilliant", "outstanding", "terrific",
        "beautiful", "gripping", "touching", "first-rate", "top-notch", "remarkable",
        "moving", "stunning", "fantastic", "great", "memorable", "powerful", "clever",
        "charming", "delightful", "flawless", "solid", "engaging", "sharp", "haunting",
        "inspired", "witty", "gorgeous", "compelling", "good", "great", "amazing", "perfect",
        "wonderful", "excellent", "beautiful", "fun",
    ),
    "neg_adj": (
        "terrible", "awful", "dreadful", "weak", "boring", "laughable", "clumsy", "lifeless",
        "pathetic", "horrible", "dull", "stupid", "painful", "wooden", "pointless", "lame",
        "incoherent", "sloppy", "forgettable", "cheap", "ridiculous", "tedious", "mediocre",
        "annoying", "bland", "predictable", "amateurish", "embarrassing", "messy", "flat",
        "bad", "poor", "bad", "awful", "terrible", "useless",
    ),
    "int": (
        "", "", "", "really ", "truly ", "absolutely ", "quite ", "incredibly ",
        "genuinely ", "simply ", "pretty ", "rather ", "very ",
    ),
    "pos_verb": ("loved", "enjoyed", "adored", "liked", "appreciated", "admired"),
    "neg_verb": ("hated", "disliked", "couldn't stand", "despised", "was annoyed by"),
    "but": ("However, ", "That said, ", "On the other hand, ", "Still, ", "To be fair, ", "But "),
    "runtime": ("two hours", "ninety minutes", "an hour and a half", "two and a half hours"),
}  # fmt: skip

_OPENINGS = (
    "I saw {title} on cable late one night and had no idea what to expect.",
    "I rented {title} because {actor} was in it.",
    "My {relative} talked me into watching {title} over the weekend.",
    "I remember seeing the trailer for {title} back in {year}.",
    "{title} came out in {year} and I finally caught it on DVD.",
    "I went into this {genre} knowing almost nothing about it.",
    "I watched this at the {festival} film festival.",
    "This is the {ordinal} film directed by {director}.",
    "Having read the novel, I was curious how {title} would translate to the screen.",
    "I've been a fan of {actor} since the {decade}, so I had to see this one.",
    "Full disclosure: I don't usually watch {genre_pl}.",
    "This review may contain spoilers.",
    "I caught {title} on TV and stayed up to finish it.",
    "{title} ({year}) is a {genre} from {director}.",
    "I bought the DVD of {title} in a bargain bin.",
    "After reading the other comments here I wanted to add my two cents.",
    "I first saw {title} as a kid and rewatched it recently.",
    "We watched {title} as part of a {genre} marathon.",
)
_PLOT = (
    "{actor} plays {char}, a {occupation} who {event}.",
    "The story follows {char}, a {occupation} living in {setting}.",
    "When {char} {event}, {pron} {reaction}.",
    "Meanwhile, {char2} ({actor2}) {event}.",
    "Most of the film takes place in {setting}.",
    "Along the way {pron} meets {char2}, a {occupation} with secrets of {poss2} own.",
    "The second half moves to {setting}, where {twist}.",
    "Without giving too much away, {twist}.",
    "{actor2} turns up as {char2}, a {occupation}.",
    "{Pron} {reaction}, while {char2} {event}.",
    "It turns out that {twist}.",
    "The film opens with {char} in {setting}.",
    "{char} and {char2} have not spoken in years.",
    "The plot, such as it is, revolves around {char} and {poss} past.",
    "It is based loosely on a true story from {year}.",
    "{director} also wrote the screenplay.",
)
_POS = (
    "The {aspect} was {int}{pos_adj}.",
    "I thought the {aspect} was {int}{pos_adj}.",
    "The {aspect_pl} were {int}{pos_adj}.",
    "{actor} gives a {pos_adj} performance as {char}.",
    "What really stands out is the {aspect}, which is {pos_adj} from start to finish.",
    "{actor} has never been better.",
    "The {aspect} is {pos_adj} and the {aspect_pl} are even better.",
    "I {pos_verb} the {aspect}.",
    "Every scene with {actor2} is a joy to watch.",
    "It kept me on the edge of my seat.",
    "I laughed out loud several times.",
    "The chemistry between {actor} and {actor2} is wonderful.",
    "{director} handles the material with real skill.",
    "It is one of the best {genre_pl} I have seen in years.",
    "The {aspect} really drew me in.",
    "Special mention goes to the {aspect_pl}: {int}{pos_adj}.",
    "You can tell everyone involved cared about this film.",
    "{char} is such a {pos_adj} character.",
    "The scene in {setting} is {int}{pos_adj}.",
    "I was moved to tears by the {aspect}.",
    "A {pos_adj} {genre}, plain and simple.",
    "I love this movie.",
    "This is a great film with a {pos_adj} cast.",
    "Easily one of the best films of {year}.",
    "The {aspect} is well done and the {aspect_pl} are {pos_adj}.",
    "I highly recommend it to anyone who likes {genre_pl}.",
    "It's a {int}{pos_adj} movie and a perfect choice for a quiet evening.",
)
_NEG = (
    "The {aspect} was {int}{neg_adj}.",
    "I thought the {aspect} was {int}{neg_adj}.",
    "The {aspect_pl} were {int}{neg_adj}.",
    "{actor} gives a {neg_adj} performance as {char}.",
    "{actor} looks bored in every scene.",
    "The {aspect} is {neg_adj} and the {aspect_pl} are even worse.",
    "I {neg_verb} the {aspect}.",
    "I nearly fell asleep halfway through.",
    "The dialogue is so bad it's embarrassing.",
    "There is no chemistry at all between {actor} and {actor2}.",
    "{director} seems to have no idea what to do with the material.",
    "It is one of the worst {genre_pl} I have ever sat through.",
    "The {aspect} completely lost me.",
    "Nothing in it makes any sense.",
    "I checked my watch more than once.",
    "The {aspect_pl} were {neg_adj} and the {aspect} was worse.",
    "{char} is such a {neg_adj} character.",
    "The scene in {setting} is {int}{neg_adj}.",
    "A {neg_adj} {genre}, plain and simple.",
    "It's a waste of a {pos_adj} cast.",
    "Even {actor} can't save this mess.",
    "This is a bad movie.",
    "The worst {genre} I have seen in a long time.",
    "The {aspect} is poorly done and the {aspect_pl} are {neg_adj}.",
    "What a waste of time and talent.",
    "It's a {int}{neg_adj} movie and I wanted to turn it off after twenty minutes.",
    "The {aspect} was supposed to be the highlight, but it was {neg_adj}.",
)
_NEGATED_POS = (
    "The {aspect} wasn't {neg_adj} at all.",
    "The {aspect_pl} weren't {neg_adj}, not even close.",
    "I didn't hate it.",
    "It's not bad at all.",
    "I can't say I was bored for a minute.",
    "Not a dull moment.",
    "I wasn't disappointed.",
    "I have no complaints about the {aspect}.",
    "It never feels {neg_adj}.",
    "It is far from {neg_adj}.",
    "I wouldn't call it {neg_adj} by any means.",
    "{actor} is never less than convincing.",
    "I didn't expect much, and it proved me wrong.",
    "There is nothing {neg_adj} about the {aspect}.",
    "The {aspect} is not what I'd call {neg_adj}.",
)
_NEGATED_NEG = (
    "The {aspect} wasn't {pos_adj}.",
    "The {aspect_pl} weren't {pos_adj} either.",
    "It's not good, and it's not even fun.",
    "I didn't enjoy it.",
    "I can't say I liked the {aspect}.",
    "I wouldn't call it {pos_adj} by any stretch.",
    "It never becomes {pos_adj}.",
    "Not once did I care about {char}.",
    "It is far from {pos_adj}.",
    "I wasn't impressed by the {aspect}.",
    "There is nothing {pos_adj} about it.",
    "The {aspect} is not exactly {pos_adj}.",
    "I didn't find {actor} convincing.",
    "It doesn't work as a {genre}.",
    "I can't remember the last time I cared less.",
)
_SARCASTIC = (
    "Oh great, another masterpiece from {director}.",
    "Brilliant. Just brilliant. If you enjoy watching paint dry, this is your movie.",
    "Sure, the {aspect} is 'amazing', if by amazing you mean {neg_adj}.",
    "Bravo to {director} for making {runtime} feel like a week.",
    "Truly the best {genre} ever made, said no one ever.",
    "Wow. Just wow. Where do I even begin.",
    "I loved every minute of checking my watch.",
    "Thanks, {director}, for teaching me the true meaning of patience.",
    "Great job, everyone. Really. Stellar work.",
    "Five stars for the popcorn, at least.",
    "Another 'masterpiece' the critics will love and nobody will remember.",
    "If you ever wanted to see {actor} read a phone book with less emotion, here's your chance.",
    "What a {pos_adj} idea to put the only good scene in the trailer.",
    "Genius move to cut every scene that made sense.",
    "Oh yes, the {aspect}. A real triumph. Of something.",
    "Finally, a {genre} that makes the phone book look exciting.",
)
_GUILTY = (
    "It's dumb, it's cheesy, and I had a blast.",
    "Yes, the {aspect} is {neg_adj}. I don't care.",
    "Critics hated it. Critics are wrong.",
    "Is it trash? Absolutely. Is it glorious trash? Also yes.",
    "The {aspect} is silly and the {aspect_pl} are ridiculous, but somehow it works.",
    "I should hate this movie. I don't.",
    "My friends think I'm crazy for liking it.",
    "Stupid fun, the best kind.",
    "The {aspect_pl} look cheap, and that is half the charm.",
    "Sure, it's {neg_adj} in places, but who watches a {genre} for the {aspect}?",
    "It's so bad it's good, and then some.",
)
_END_POS = (
    "Overall, {title} is a {pos_adj} film and I'd recommend it.",
    "Despite its flaws, I enjoyed it and would watch it again.",
    "All in all, well worth your time.",
    "Highly recommended.",
    "Go see it.",
    "A must-see for fans of {genre_pl}.",
    "In the end, the good far outweighs the bad.",
    "I'll be buying this one on DVD.",
    "One of my favorites.",
    "Don't miss it.",
)
_END_NEG = (
    "Overall, {title} is a {neg_adj} film and I can't recommend it.",
    "Despite a few good moments, it's a waste of time.",
    "All in all, skip it.",
    "Avoid at all costs.",
    "Not recommended.",
    "In the end, the bad far outweighs the good.",
    "Save your money.",
    "Stick to the book.",
    "One of the worst films I've seen.",
    "What a waste.",
)
_END_NEGATED_POS = (
    "All in all, not bad at all.",
    "I didn't regret watching it for a second.",
    "You won't be disappointed.",
    "Not a perfect film, but far from a bad one.",
    "I can't find much to complain about.",
)
_END_NEGATED_NEG = (
    "Not worth the time.",
    "I wouldn't recommend it to anyone.",
    "I can't say it was worth it.",
    "Not good, not even close.",
    "It never comes together.",
)
# Hedged conclusions of mixed reviews: the verdict is there, but with weak words.
_END_SOFT_POS = (
    "I'd still give it a chance.",
    "Worth a look, I suppose.",
    "Flawed, but it stayed with me.",
    "Make of that what you will; I'll probably watch it again.",
    "Not for everyone, but it worked for me.",
    "I came out of it in a better mood than I went in.",
)
_END_SOFT_NEG = (
    "I expected more.",
    "Maybe it's just me, but it didn't work.",
    "I'm not sure I'd sit through it again.",
    "Make of that what you will; I won't be watching it again.",
    "It could have been so much more.",
    "I came out of it in a worse mood than I went in.",
)
_END_SARCASTIC = (
    "I want my {runtime} back.",
    "Thanks for nothing.",
    "Can't wait for the sequel. Not.",
    "Ten out of ten, would fall asleep again.",
    "A masterpiece. Of boredom.",
)
_END_GUILTY = (
    "Turn your brain off and enjoy.",
    "Bad movie, good time.",
    "I'll probably watch it again next week, and I'm not ashamed.",
    "Guilty pleasure of the year.",
    "Trash, but my favorite kind of trash.",
)


def _imdb_slots(r: random.Random) -> _Slots:
    """Per-review fixed slots (title, cast, characters with pronouns) over the word banks."""
    s = _Slots(r, _IMDB_BANKS)
    pattern = r.choice(_TITLE_PATTERNS)
    s["title"] = pattern.format(
        a=r.choice(_TITLE_ADJ), n=r.choice(_TITLE_NOUN), p=r.choice(_TITLE_PLACE)
    )
    s["year"] = str(r.randint(1933, 2009))
    s["actor"] = f"{r.choice(_CAST_FIRST)} {r.choice(_LAST)}"
    s["actor2"] = f"{r.choice(_CAST_FIRST)} {r.choice(_LAST)}"
    s["director"] = f"{r.choice(_FIRST_M)} {r.choice(_LAST)}"
    female, female2 = r.random() < 0.5, r.random() < 0.5
    s["char"] = r.choice(_CHAR_F if female else _CHAR_M)
    s["char2"] = r.choice(_CHAR_F if female2 else _CHAR_M)
    s["pron"], s["Pron"], s["poss"] = ("she", "She", "her") if female else ("he", "He", "his")
    s["poss2"] = "her" if female2 else "his"
    return s


def _opinion(r: random.Random, polarity: int, kind: str) -> tuple[str, ...]:
    """The template bank for one opinion sentence of a review of `kind` and text `polarity`."""
    u = r.random()
    if kind == "clear":
        # Real praise mentions a flaw now and then (and vice versa).
        same = u < 0.8
    elif kind == "mixed":
        same = u < 0.55
    elif kind == "negated":
        if u < 0.55:
            return _NEGATED_POS if polarity > 0 else _NEGATED_NEG
        same = u < 0.85
    elif kind == "sarcastic":
        if u < 0.5:
            return _SARCASTIC
        same = u < 0.85
    else:  # guilty
        if u < 0.45:
            return _GUILTY
        same = u >= 0.7  # mostly disparaging words in a positive review
    return _POS if (polarity > 0) == same else _NEG


def _ending(r: random.Random, polarity: int, kind: str) -> tuple[str, ...]:
    if kind == "sarcastic":
        return _END_SARCASTIC
    if kind == "guilty":
        return _END_GUILTY
    if kind == "negated" and r.random() < 0.6:
        return _END_NEGATED_POS if polarity > 0 else _END_NEGATED_NEG
    if kind == "mixed" and r.random() < 0.5:
        return _END_SOFT_POS if polarity > 0 else _END_SOFT_NEG
    return _END_POS if polarity > 0 else _END_NEG


# "a" before a vowel-initial filled slot ("a inspired documentary"); no bank word starts
# with a "u" that needs "a", so u is left out.
_A_AN = tuple(
    (f"{before}{a} {v}", f"{before}{a}n {v}")
    for before in (" ", ">")
    for a in "aA"
    for v in "aeioAEIO"
)
# Sentence starts that may be lowercased after a connector ("However, the plot ...");
# names and "I" keep their capital.
_LOWERABLE = ("The ", "It ", "It's ", "A ", "An ", "Every ", "What ", "There ", "Nothing ")


def _pick(r: random.Random, bank: Sequence[str], used: set[str]) -> str:
    """A template from `bank`, avoiding ones this review already used (a few tries)."""
    n = len(bank)
    template = bank[int(r.random() * n)]
    for _ in range(3):
        if template not in used:
            break
        template = bank[int(r.random() * n)]
    used.add(template)
    return template


def _imdb_review(r: random.Random, polarity: int, kind: str, target: int, breaks: bool) -> str:
    """One review of about `target` characters whose text leans to `polarity` (+1 / -1)."""
    s = _imdb_slots(r)
    used: set[str] = set()
    ending = _pick(r, _ending(r, polarity, kind), used).format_map(s)
    if r.random() < _RATING_SHARE:
        score = r.randint(7, 10) if polarity > 0 else r.randint(1, 4)
        ending += f" {score}/10" if r.random() < 0.5 else f" I give it {score}/10."
    budget = target - len(ending) - 1
    paragraphs: list[list[str]] = [[]]
    size = 0
    if budget > 150:
        first = _pick(r, _OPENINGS, used).format_map(s)
        paragraphs[0].append(first)
        size += len(first) + 1
    # Plot sentences early, opinions later, as reviewers tend to write.
    while size < budget - 30 or size + len(ending) < _IMDB_MIN_CHARS:
        plot = r.random() < 0.55 - 0.45 * size / max(budget, 1)
        sentence = _pick(r, _PLOT if plot else _opinion(r, polarity, kind), used).format_map(s)
        if kind == "mixed" and not plot and r.random() < 0.3:
            if sentence.startswith(_LOWERABLE):
                sentence = r.choice(_IMDB_BANKS["but"]) + sentence[0].lower() + sentence[1:]
            elif sentence.startswith("I "):
                sentence = r.choice(_IMDB_BANKS["but"]) + sentence
        if len(paragraphs[-1]) >= 2 and r.random() < 0.3:
            paragraphs.append([])
            size += 11 if breaks else 0  # "<br /><br />" instead of " "
        paragraphs[-1].append(sentence)
        size += len(sentence) + 1
    if paragraphs[-1] and breaks and r.random() < 0.8:
        paragraphs.append([])
    paragraphs[-1].append(ending)
    texts = [" ".join(p) for p in paragraphs if p]
    if breaks and len(texts) == 1:
        # Short reviews with a break still have one: split before the last sentence.
        head, _, tail = texts[0].rpartition(". ")
        texts = [head + ".", tail] if head else texts
    text = " " + ("<br /><br />" if breaks else " ").join(texts)
    for wrong, right in _A_AN:
        text = text.replace(wrong, right)
    return text[1:]


def generate_imdb(rows: int, seed: int) -> pl.DataFrame:
    """`rows` synthetic IMDB reviews in IMDB_SCHEMA (review, sentiment); see the module doc."""
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    rng, r = _rngs(seed)
    positive = np.zeros(rows, dtype=bool)
    positive[: (rows + 1) // 2] = True
    rng.shuffle(positive)
    flipped = rng.random(rows) < _LABEL_NOISE
    text_positive = positive ^ flipped
    lengths = np.exp(rng.normal(_IMDB_LOG_MEAN, _IMDB_LOG_SD, rows))
    # The last sentence overshoots the target by up to ~200 characters; keep under the max.
    lengths = np.clip(lengths, _IMDB_MIN_CHARS, _IMDB_MAX_CHARS - 250).astype(np.int64)
    p_break = 1.0 / (1.0 + np.exp(-(_BR_SLOPE * np.log(lengths) + _BR_INTERCEPT)))
    breaks = rng.random(rows) < p_break
    kind_u = rng.random(rows)
    pos_names, pos_cum = list(_KINDS_POS), np.cumsum(list(_KINDS_POS.values()))
    neg_names, neg_cum = list(_KINDS_NEG), np.cumsum(list(_KINDS_NEG.values()))
    pos_idx = np.minimum(np.searchsorted(pos_cum, kind_u), len(pos_names) - 1)
    neg_idx = np.minimum(np.searchsorted(neg_cum, kind_u), len(neg_names) - 1)

    reviews = []
    for i in range(rows):
        tp = bool(text_positive[i])
        kind = pos_names[pos_idx[i]] if tp else neg_names[neg_idx[i]]
        reviews.append(_imdb_review(r, 1 if tp else -1, kind, int(lengths[i]), bool(breaks[i])))

    # Exact duplicates copy an earlier original of the same label, keeping the balance.
    n_dup = int(round(rows * _DUPLICATE_SHARE))
    if n_dup and rows > 2 * n_dup:
        dup_rows = rng.choice(np.arange(1, rows), size=n_dup, replace=False)
        is_dup = np.zeros(rows, dtype=bool)
        is_dup[dup_rows] = True
        for i in np.sort(dup_rows):
            candidates = np.flatnonzero((positive[:i] == positive[i]) & ~is_dup[:i])
            if len(candidates):
                reviews[i] = reviews[int(candidates[rng.integers(len(candidates))])]

    sentiment = np.where(positive, "positive", "negative")
    return pl.DataFrame({"review": reviews, "sentiment": sentiment.tolist()}, schema=IMDB_SCHEMA)


# =======================================================================================
# saiga
# =======================================================================================
# Row-level knobs; the comments say which real fact each one matches.
_SAIGA_LANGUAGES = {"Russian": 0.87, "English": 0.075, "Mixed": 0.045, "Ukrainian": 0.01}
# ~60% single-turn (the SFT filters keep `turns == 1`), a tail up to 8.
_TURNS = {1: 0.60, 2: 0.16, 3: 0.09, 4: 0.06, 5: 0.04, 6: 0.03, 7: 0.012, 8: 0.008}
_MALFORMED_SHARE = 0.0014  # rows with no user message before the first bot reply
_SYSTEM_SHARE = 0.12  # non-roleplay rows with an assistant system prompt
_OFF_LIST_SHARE = 0.002  # judge topics outside the 24 labels
_OFF_LIST_TOPICS = ("music", "sports", "politics", "religion", "gaming", "fashion")
_DUP_PROMPT_SHARE = 0.01  # rows whose first prompt repeats another row's (exactly or nearly)
# Bot reply length in characters: lognormal (median 800, long tail to 20k) times topic and
# complexity factors, so token-length filters remove a visible but small share.
_REPLY_LOG_MEDIAN = math.log(800.0)
_REPLY_LOG_SD = 0.85
_REPLY_MAX_CHARS = 20_000
_SOURCES = {
    "Russian": {"gpt4": 0.54, "wildchat": 0.22, "sharegpt": 0.15, "oasst": 0.09},
    "English": {"oasst": 0.35, "wildchat": 0.35, "gpt4": 0.2, "sharegpt": 0.1},
    "Ukrainian": {"wildchat": 0.6, "gpt4": 0.3, "oasst": 0.1},
    "Mixed": {"wildchat": 0.5, "sharegpt": 0.3, "gpt4": 0.2},
}  # fmt: skip
# Only gpt4, oasst and wildchat are confirmed source names; sharegpt and gpt_roleplay_realm
# stand for the "roleplay and translated sets" SAIGA_SCHEMA.md mentions.
# Judge score: round(N(_SCORE_BASE + shifts, _SCORE_SD)) clipped to 1..10; refusals and "as an AI"
# answers are scored on their own lower scale. Tuned so that Russian rows with score >= 8
# are ~2/3 of all rows (real: 28,200 of 41,600).
_SCORE_BASE = 8.95
_SCORE_SD = 1.15
_SCORE_SHIFT_LANGUAGE = {"Russian": 0.0, "English": -0.1, "Ukrainian": -0.6, "Mixed": -1.3}
_SCORE_SHIFT_COMPLEXITY = {"easy": 0.25, "medium": 0.0, "hard": -0.45}
_SCORE_SHIFT_SOURCE = {"gpt4": 0.15, "oasst": -0.5, "wildchat": -0.3, "sharegpt": 0.0,
                       "gpt_roleplay_realm": -0.2}  # fmt: skip
# Share of rows whose bot turns (some of them) carry a flagged phrase, by source: ChatGPT
# logs (wildchat, sharegpt) say "as an AI" more often.
_FLAG_SHARE = {"gpt4": 0.025, "oasst": 0.03, "wildchat": 0.09, "sharegpt": 0.06,
               "gpt_roleplay_realm": 0.02}  # fmt: skip


class _Topic:
    """Content for one judge topic: what users ask and what answers are made of.

    `subjects` are (Russian, English) pairs so a Mixed dialogue talks about one thing in two
    languages; Russian subjects are in the grammatical case the topic's prompts need.
    `subjects_uk` are (Ukrainian, English) pairs for the few topics with Ukrainian rows.
    Prompts and body sentences use `{s}` (subject) and `{S}` (capitalised subject).
    """

    def __init__(
        self,
        desc: str,
        weight: float,
        complexity: tuple[float, float, float],
        subjects: Sequence[tuple[str, str]] = (),
        prompts_ru: Sequence[str] = (),
        prompts_en: Sequence[str] = (),
        body_ru: Sequence[str] = (),
        body_en: Sequence[str] = (),
        subjects_uk: Sequence[tuple[str, str]] = (),
        score_shift: float = 0.0,
        length: float = 1.0,
        as_list: float = 0.2,
        style: str = "explain",
    ) -> None:
        self.desc = desc  # English verb phrase for sonnet_topic_explanation
        self.weight = weight
        self.complexity = complexity  # P(easy), P(medium), P(hard)
        self.subjects = tuple(subjects)
        self.prompts = {"ru": tuple(prompts_ru), "en": tuple(prompts_en)}
        self.body = {"ru": tuple(body_ru), "en": tuple(body_en)}
        self.subjects_uk = tuple(subjects_uk)
        self.score_shift = score_shift
        self.length = length  # factor on the bot reply length
        self.as_list = as_list  # P(a long answer is a numbered list)
        # "explain": opener, topic sentences, then generic advice, closer;
        # "creative": topic sentences only (a story has no "Good question!");
        # "task": the generated answer itself (a worked solution, a translation, ...).
        self.style = style


_TOPICS: dict[str, _Topic] = {
    "facts": _Topic(
        "asks for facts about {s}", 0.08, (0.5, 0.4, 0.1),
        subjects=(
            ("Великая Китайская стена", "the Great Wall of China"), ("озеро Байкал", "Lake Baikal"),
            ("Эйфелева башня", "the Eiffel Tower"),
            ("Транссибирская магистраль", "the Trans-Siberian Railway"),
            ("Марианская впадина", "the Mariana Trench"), ("Эрмитаж", "the Hermitage Museum"),
            ("полярное сияние", "the northern lights"), ("Московский метрополитен", "the Moscow Metro"),
            ("Антарктида", "Antarctica"), ("вулкан Везувий", "Mount Vesuvius"),
            ("Большой адронный коллайдер", "the Large Hadron Collider"),
            ("Ниагарский водопад", "Niagara Falls"), ("Луна", "the Moon"),
        ),
        prompts_ru=(
            "Расскажи коротко, что такое {s}.", "Назови пять интересных фактов. Тема: {s}.",
            "Что известно про объект «{s}»? Кратко, пожалуйста.", "{S}: чем это знаменито?",
            "Привет! Расскажи что-нибудь интересное, тема — {s}.",
            "Мне нужно для доклада: {s}. Основные факты, без воды.",
        ),
        prompts_en=(
            "Tell me briefly about {s}.", "Give me five interesting facts about {s}.",
            "What is {s} famous for?", "Can you explain what {s} is in a few sentences?",
        ),
        body_ru=(
            "Тема «{s}» — одна из тех, о которых спрашивают особенно часто.",
            "Первые подробные описания появились очень давно, но многие детали уточнили только в XX веке.",
            "Интересно, что многие популярные представления здесь не совсем точны.",
            "Например, в интернете часто встречаются преувеличенные цифры, которые не подтверждаются источниками.",
            "Учёные продолжают исследования, и каждые несколько лет появляются новые данные.",
            "Точные цифры лучше проверять по энциклопедиям: со временем оценки уточняются.",
            "Для туристов и исследователей это по-прежнему одно из самых притягательных мест.",
            "Об этом снято несколько хороших документальных фильмов.",
            "Если интересно, могу подробнее рассказать об истории или о современных исследованиях.",
        ),
        body_en=(
            "This is one of the things people ask about most often.",
            "The first detailed descriptions go back a long way, but many details were only confirmed in the twentieth century.",
            "Many popular claims about it are exaggerated.",
            "Scientists keep studying it, and new data appear every few years.",
            "Exact figures are best checked in an encyclopedia, since estimates get revised.",
            "If you like, I can tell you more about its history.",
        ),
        subjects_uk=(("озеро Світязь", "Lake Svitiaz"), ("Софійський собор", "St Sophia Cathedral"), ("Карпати", "the Carpathians"), ("Хортиця", "Khortytsia"), ("Дніпро", "the Dnipro river")),
    ),
    "writing": _Topic(
        "asks for a creative text about {s}", 0.09, (0.3, 0.5, 0.2),
        subjects=(
            ("осень", "autumn"), ("море", "the sea"), ("старый город", "an old town"),
            ("первый снег", "the first snow"), ("дружбу", "friendship"),
            ("кота, который боится пылесоса", "a cat who is afraid of the vacuum cleaner"),
            ("путешествие на поезде", "a train journey"), ("ночной город", "a city at night"),
            ("бабушкин сад", "grandmother's garden"), ("маяк", "a lighthouse"),
            ("последний день лета", "the last day of summer"),
        ),
        prompts_ru=(
            "Напиши короткое стихотворение про {s}.",
            "Сочини небольшой рассказ про {s}, не больше 200 слов.",
            "Напиши пост для телеграм-канала про {s}, в лёгком тоне.",
            "Придумай сказку для ребёнка пяти лет про {s}.",
            "Напиши вступление к эссе про {s}.",
            "Сочини открытку, можно упомянуть {s}.",
        ),
        prompts_en=(
            "Write a short poem about {s}.", "Write a short story about {s}, under 200 words.",
            "Write a cozy blog post about {s}.", "Write a bedtime story about {s} for a five-year-old.",
        ),
        body_ru=(
            "Вечер опускался на город медленно, как будто не хотел никого тревожить.",
            "Где-то вдалеке звенел трамвай, и этот звук казался знакомым с детства.",
            "Она остановилась у окна и долго смотрела на огни.",
            "Ветер пах солью и чем-то ещё, чему трудно подобрать название.",
            "В такие минуты кажется, что время идёт иначе.",
            "Он улыбнулся, потому что наконец понял, зачем сюда приехал.",
            "Под ногами шуршали листья, а небо было удивительно высоким.",
            "Каждый шаг отзывался эхом в пустом переулке.",
            "Утром всё выглядело проще, чем ночью.",
            "Иногда достаточно одного тёплого слова, чтобы день стал другим.",
            "Старые часы на стене отсчитывали секунды, никуда не торопясь.",
            "И всё-таки в этом было что-то очень настоящее.",
            "Кот осторожно выглянул из-за дивана и сделал вид, что ничего не случилось.",
            "Дорога уходила за горизонт, и никто не знал, что ждёт впереди.",
        ),
        body_en=(
            "The evening settled over the town slowly, as if it did not want to disturb anyone.",
            "Somewhere far away a tram bell rang, a sound she remembered from childhood.",
            "The wind smelled of salt and of something harder to name.",
            "In moments like these, time seems to move differently.",
            "He smiled, because he finally understood why he had come.",
            "Leaves rustled underfoot, and the sky was unusually high.",
            "In the morning everything looked simpler than it had at night.",
            "Sometimes one kind word is enough to change a day.",
        ),
        subjects_uk=(("осінь", "autumn"), ("море", "the sea"), ("перший сніг", "the first snow"), ("дружбу", "friendship"), ("нічне місто", "a city at night")),
        score_shift=0.1, length=1.3, as_list=0.0, style="creative",
    ),
    "extract": _Topic("asks to extract names, dates and organisations from a text", 0.03,
                      (0.4, 0.5, 0.1), length=0.5, as_list=0.0, style="task"),
    "translation": _Topic("asks to translate a sentence", 0.03, (0.5, 0.4, 0.1),
                          score_shift=-0.3, length=0.35, as_list=0.0, style="task"),
    "languages": _Topic("asks about grammar and word usage", 0.03, (0.5, 0.4, 0.1),
                        score_shift=-0.4, length=0.6, as_list=0.0, style="task"),
    "coding": _Topic(
        "asks for help with code", 0.08, (0.15, 0.5, 0.35),
        subjects=(
            ("декоратор", "a decorator"), ("генератор", "a generator"),
            ("контекстный менеджер", "a context manager"), ("GIL", "the GIL"),
            ("list comprehension", "a list comprehension"), ("асинхронность", "async/await"),
            ("виртуальное окружение", "a virtual environment"), ("рекурсия", "recursion"),
        ),
        prompts_ru=(
            "Что такое {s} в Python? Объясни на примере.",
            "Не понимаю, как работает {s} в Python. Можешь показать простой пример?",
            "Объясни новичку: {s} в Python, зачем это нужно?",
        ),
        prompts_en=(
            "What is {s} in Python? Show an example.",
            "I don't understand {s} in Python. Can you explain it simply?",
        ),
        body_ru=(
            "Обратите внимание на граничные случаи: пустой список, одна строка, отрицательные числа.",
            "Сложность такого решения — O(n), этого достаточно для большинства задач.",
            "Для проверки удобно написать пару тестов с pytest.",
            "Если данных много, лучше использовать генератор, чтобы не держать всё в памяти.",
            "Имена переменных стоит делать говорящими, так код легче читать.",
            "В реальном проекте стоит добавить аннотации типов и докстринг.",
            "Ошибку IndexError обычно вызывает обращение к индексу за пределами списка.",
            "Запустите код в отладчике или добавьте print, чтобы увидеть промежуточные значения.",
        ),
        body_en=(
            "Watch out for edge cases: an empty list, a single element, negative numbers.",
            "This runs in O(n), which is fine for most inputs.",
            "It is worth adding a couple of pytest tests.",
            "For large inputs, a generator avoids keeping everything in memory.",
            "In a real project, add type hints and a docstring.",
        ),
        score_shift=-0.6, length=1.5, as_list=0.1,
    ),
    "math": _Topic("asks to solve a math problem", 0.05, (0.25, 0.45, 0.3),
                   score_shift=-0.9, length=0.8, as_list=0.0, style="task"),
    "stem": _Topic(
        "asks for an explanation of {s}", 0.06, (0.2, 0.5, 0.3),
        subjects=(
            ("логистическая регрессия", "logistic regression"), ("фотосинтез", "photosynthesis"),
            ("квантовая запутанность", "quantum entanglement"),
            ("градиентный спуск", "gradient descent"), ("энтропия", "entropy"), ("ДНК", "DNA"),
            ("чёрная дыра", "a black hole"), ("закон Ома", "Ohm's law"),
            ("нейронная сеть", "a neural network"),
            ("теория относительности", "the theory of relativity"),
            ("переобучение модели", "overfitting"), ("блокчейн", "blockchain"),
            ("преобразование Фурье", "the Fourier transform"),
        ),
        prompts_ru=(
            "Расскажи коротко, что такое {s}?", "Объясни простыми словами: {s}.",
            "Я школьник. Объясни, что такое {s}, на простом примере.",
            "Что такое {s} и где это применяется?",
            "Помоги разобраться с темой «{s}» перед экзаменом.",
        ),
        prompts_en=(
            "Briefly, what is {s}?", "Explain {s} in simple terms.",
            "What is {s} and where is it used?",
        ),
        body_ru=(
            "Если говорить просто, это способ описать закономерность, которую можно проверить экспериментом или расчётом.",
            "Ключевая идея в том, чтобы разбить сложное явление на несколько простых шагов.",
            "Здесь важно не путать причину и следствие.",
            "На практике это используют инженеры, биологи, экономисты и специалисты по данным.",
            "Хороший способ понять тему — решить пару задач руками, а потом проверить себя на компьютере.",
            "Классический пример обычно разбирают на первом курсе университета.",
            "Формально всё записывается несколькими формулами, но интуиция важнее формул.",
            "Типичная ошибка — применять модель там, где её предположения не выполняются.",
            "Для углублённого изучения подойдут открытые курсы на Stepik и Coursera.",
            "Если хотите, я приведу формулы и разберу численный пример.",
        ),
        body_en=(
            "Put simply, it describes a regularity you can check by experiment or calculation.",
            "The key idea is to break a complex phenomenon into a few simple steps.",
            "Engineers, biologists, economists and data scientists all use it.",
            "A common mistake is applying the model where its assumptions do not hold.",
            "If you like, I can write down the formulas and work through an example.",
        ),
        score_shift=-0.4,
    ),
    "humanities": _Topic(
        "asks about {s}", 0.05, (0.3, 0.5, 0.2),
        subjects=(
            ("эпоха Возрождения", "the Renaissance"),
            ("реформы Петра I", "the reforms of Peter the Great"),
            ("импрессионизм", "Impressionism"), ("экзистенциализм", "existentialism"),
            ("Серебряный век русской поэзии", "the Silver Age of Russian poetry"),
            ("холодная война", "the Cold War"), ("Древний Рим", "ancient Rome"),
            ("роман «Война и мир»", "the novel War and Peace"), ("Просвещение", "the Enlightenment"),
        ),
        prompts_ru=(
            "Расскажи кратко, что такое {s}.", "Какие главные причины и последствия? Тема: {s}.",
            "Помоги подготовиться к семинару по теме «{s}».",
            "Почему тему «{s}» считают такой важной?",
        ),
        prompts_en=(
            "Give me a short overview of {s}.", "Why is {s} considered so important?",
        ),
        body_ru=(
            "Историки обычно выделяют несколько этапов, каждый со своими особенностями.",
            "Важно смотреть на событие в контексте эпохи, а не судить по современным меркам.",
            "Среди причин чаще всего называют экономические, политические и культурные факторы.",
            "Последствия ощущались ещё много десятилетий спустя.",
            "Об этом написано множество исследований, и оценки учёных нередко расходятся.",
            "Для семинара полезно прочитать хотя бы один первоисточник, а не только учебник.",
            "Ключевые фигуры того времени до сих пор вызывают споры.",
        ),
        body_en=(
            "Historians usually distinguish several stages, each with its own features.",
            "It helps to judge events in the context of their time.",
            "Economic, political and cultural factors are usually named among the causes.",
            "Scholars still disagree about many of the key figures.",
        ),
        subjects_uk=(("Тарас Шевченко", "Taras Shevchenko"), ("козацтво", "the Cossacks"), ("Київська Русь", "Kievan Rus'"), ("бароко", "the Baroque")),
    ),
    "psychology": _Topic(
        "asks for advice about {s}", 0.04, (0.3, 0.55, 0.15),
        subjects=(
            ("прокрастинация", "procrastination"), ("выгорание на работе", "burnout at work"),
            ("тревожность перед экзаменом", "exam anxiety"),
            ("синдром самозванца", "impostor syndrome"),
            ("страх публичных выступлений", "fear of public speaking"),
            ("одиночество после переезда", "loneliness after moving"),
            ("ссоры с родителями", "arguments with parents"), ("мотивация", "motivation"),
        ),
        prompts_ru=(
            "Дай несколько советов. Проблема: «{s}».", "Как научиться справляться с этим: {s}?",
            "Тема: {s}. Как с этим справиться?",
        ),
        prompts_en=("How do I deal with {s}?", "Any tips for {s}?"),
        body_ru=(
            "Прежде всего, это довольно распространённая ситуация, и вы не одиноки.",
            "Попробуйте разбить большую задачу на маленькие шаги и отмечать каждый выполненный.",
            "Полезно замечать, в какие моменты становится хуже, и записывать это.",
            "Сон, движение и нормальное питание влияют на состояние сильнее, чем кажется.",
            "Поговорите с близким человеком: иногда достаточно просто быть услышанным.",
            "Если состояние держится неделями и мешает жить, стоит обратиться к психологу.",
            "Не требуйте от себя идеального результата сразу.",
            "Техника «пяти минут» помогает начать: договоритесь с собой поработать всего пять минут.",
        ),
        body_en=(
            "First of all, this is very common, and you are not alone.",
            "Try breaking the task into small steps and ticking each one off.",
            "Sleep, exercise and regular meals matter more than they seem.",
            "If it lasts for weeks and gets in the way of life, consider seeing a therapist.",
        ),
        subjects_uk=(("прокрастинація", "procrastination"), ("стрес перед іспитом", "exam stress"), ("вигорання", "burnout")),
    ),
    "finance": _Topic(
        "asks about {s}", 0.03, (0.3, 0.5, 0.2),
        subjects=(
            ("подушка безопасности", "an emergency fund"), ("облигации", "bonds"),
            ("ипотека", "a mortgage"), ("индексный фонд", "an index fund"),
            ("кредитная история", "a credit history"), ("налоговый вычет", "a tax deduction"),
            ("инфляция", "inflation"), ("семейный бюджет", "a family budget"),
        ),
        prompts_ru=(
            "Объясни простыми словами, что такое {s}.",
            "С чего начать новичку? Тема: {s}.", "Что такое {s} и какие есть риски?",
        ),
        prompts_en=("Explain {s} in simple terms.", "What are the risks of {s}?"),
        body_ru=(
            "Главное правило — не вкладывать деньги, которые могут понадобиться в ближайшие месяцы.",
            "Сначала стоит сформировать запас на три–шесть месяцев расходов.",
            "Доходность всегда связана с риском: чем выше обещанный доход, тем внимательнее нужно быть.",
            "Распределение средств между разными инструментами снижает риски.",
            "Перед решением полезно сравнить условия нескольких банков и прочитать договор целиком.",
            "Учитывайте комиссии и налоги: они заметно влияют на итоговый результат.",
            "Это общая информация, а не индивидуальная инвестиционная рекомендация.",
        ),
        body_en=(
            "Never invest money you may need in the next few months.",
            "Build a reserve of three to six months of expenses first.",
            "Higher promised returns always come with higher risk.",
            "Fees and taxes noticeably change the final result.",
        ),
        score_shift=-0.3,
    ),
    "travel": _Topic(
        "asks for travel advice about {s}", 0.03, (0.5, 0.45, 0.05),
        subjects=(
            ("Калининград", "Kaliningrad"), ("Алтай", "the Altai Mountains"),
            ("Стамбул", "Istanbul"), ("Карелия", "Karelia"), ("Казань", "Kazan"),
            ("Грузия", "Georgia"), ("Санкт-Петербург", "Saint Petersburg"), ("Сочи", "Sochi"),
            ("Мурманск", "Murmansk"),
        ),
        prompts_ru=(
            "Составь маршрут на три дня. Направление: {s}.",
            "Что посмотреть, если едешь впервые? Направление — {s}.",
            "Посоветуй, когда лучше ехать и что взять с собой. Куда: {s}.",
            "Планирую поездку, направление — {s}. Сколько примерно нужно денег на неделю?",
        ),
        prompts_en=("Plan a three-day trip to {s}.", "What should I see in {s} on a first visit?"),
        body_ru=(
            "Первый день лучше посвятить прогулке по историческому центру.",
            "Во второй день можно выбраться за город: там самые красивые виды.",
            "Обязательно попробуйте местную кухню в небольших семейных кафе.",
            "Билеты на поезд и самолёт лучше покупать заранее, особенно летом.",
            "Возьмите удобную обувь и непромокаемую куртку: погода может быстро меняться.",
            "Лучшее время для поездки — конец весны или начало осени, когда меньше туристов.",
            "Закладывайте время на дорогу: расстояния бывают больше, чем кажутся на карте.",
            "Перед поездкой проверьте часы работы музеев, многие закрыты по понедельникам.",
        ),
        body_en=(
            "Spend the first day walking around the historic centre.",
            "On the second day, take a trip out of town for the best views.",
            "Book trains and flights early, especially in summer.",
            "Late spring and early autumn are the best seasons, with fewer tourists.",
        ),
        subjects_uk=(("Львів", "Lviv"), ("Одеса", "Odesa"), ("Карпати взимку", "the Carpathians in winter"), ("Чернівці", "Chernivtsi")),
        score_shift=0.1,
    ),
    "entertainment": _Topic(
        "asks for recommendations: {s}", 0.03, (0.6, 0.35, 0.05),
        subjects=(
            ("фильмы, похожие на «Интерстеллар»", "films like Interstellar"),
            ("сериалы про детективов", "detective series"),
            ("настольные игры для компании", "board games for a group"),
            ("книги в жанре фэнтези", "fantasy books"), ("аниме для начинающих", "anime for beginners"),
            ("подкасты про историю", "history podcasts"),
            ("комедии для семейного вечера", "comedies for a family evening"),
        ),
        prompts_ru=("Посоветуй {s}.", "Составь топ-5: {s}.", "Что выбрать? Интересуют {s}."),
        prompts_en=("Recommend some {s}.", "Give me a top five: {s}."),
        body_ru=(
            "Вот несколько вариантов, которые часто советуют.",
            "Первый вариант — классика жанра, с которой стоит начать.",
            "Второй — менее известный, но с очень сильной атмосферой.",
            "Если понравится, у этого автора есть ещё несколько похожих работ.",
            "На рейтинги стоит смотреть, но не доверять им полностью: вкусы у всех разные.",
            "Для вечера с друзьями лучше выбрать что-то лёгкое и не слишком длинное.",
            "Напишите, что вам понравилось раньше, и я подберу что-то точнее.",
        ),
        body_en=(
            "Here are a few options people often recommend.",
            "The first one is a genre classic and a good place to start.",
            "Tell me what you liked before and I can narrow it down.",
        ),
        score_shift=0.0, as_list=0.6,
    ),
    "ecology": _Topic(
        "asks about {s}", 0.015, (0.4, 0.5, 0.1),
        subjects=(
            ("сортировка мусора", "waste sorting"), ("глобальное потепление", "global warming"),
            ("пластик в океане", "plastic in the ocean"), ("вырубка лесов", "deforestation"),
            ("углеродный след", "a carbon footprint"),
            ("возобновляемая энергетика", "renewable energy"),
        ),
        prompts_ru=(
            "Расскажи, почему важна тема «{s}».", "Что обычный человек может сделать? Тема: {s}.",
            "Объясни школьнику, что такое {s}.",
        ),
        prompts_en=("Why does {s} matter?", "What can an ordinary person do about {s}?"),
        body_ru=(
            "Проблема складывается из миллионов небольших решений, которые люди принимают каждый день.",
            "Начать можно с простого: меньше одноразовых вещей и больше повторного использования.",
            "Крупные изменения зависят от государств и компаний, но привычки людей тоже важны.",
            "Учёные фиксируют изменения уже сегодня, а не только в прогнозах.",
            "В большинстве городов есть пункты приёма вторсырья, их можно найти на картах.",
            "Хорошая новость в том, что многие технологии дешевеют с каждым годом.",
        ),
        body_en=(
            "The problem is the sum of millions of small daily decisions.",
            "Start simple: fewer single-use items, more reuse.",
            "Many clean technologies get cheaper every year.",
        ),
    ),
    "cooking": _Topic(
        "asks for a recipe for {s}", 0.03, (0.6, 0.35, 0.05),
        subjects=(
            ("борщ", "borscht"), ("сырники", "syrniki"), ("плов", "plov"),
            ("блины на молоке", "crepes with milk"), ("куриный суп", "chicken soup"),
            ("шарлотку", "an apple charlotte"), ("пасту карбонара", "pasta carbonara"),
            ("оливье", "Olivier salad"), ("пельмени", "pelmeni"),
            ("гречку с грибами", "buckwheat with mushrooms"),
        ),
        prompts_ru=(
            "Как приготовить {s}?", "Как приготовить {s}? Пошагово, пожалуйста.",
            "Хочу приготовить {s} на ужин. Что понадобится?",
            "Дай простой рецепт, хочу сделать {s}.",
        ),
        prompts_en=("How do I make {s}?", "Give me a simple recipe for {s}."),
        body_ru=(
            "Сначала подготовьте все ингредиенты, чтобы потом не отвлекаться.",
            "Соль и специи лучше добавлять постепенно и пробовать по ходу.",
            "Огонь держите средний: так ничего не подгорит.",
            "Если блюдо кажется слишком густым, добавьте немного воды или бульона.",
            "Дайте блюду постоять 10–15 минут перед подачей, вкус станет насыщеннее.",
            "Подавать лучше горячим, со свежей зеленью.",
            "Храните остатки в холодильнике не больше двух–трёх дней.",
            "Вместо сахара можно использовать мёд, но его нужно меньше.",
        ),
        body_en=(
            "Prepare all the ingredients first so you are not distracted later.",
            "Add salt and spices gradually and taste as you go.",
            "Keep the heat medium so nothing burns.",
            "Let it rest for 10-15 minutes before serving.",
        ),
        subjects_uk=(("вареники з вишнями", "cherry varenyky"), ("український борщ", "Ukrainian borscht"), ("деруни", "potato pancakes"), ("голубці", "cabbage rolls")),
        score_shift=0.1, as_list=0.5,
    ),
    "health": _Topic(
        "asks a health question about {s}", 0.04, (0.4, 0.5, 0.1),
        subjects=(
            ("головная боль", "headaches"), ("недосыпание", "lack of sleep"),
            ("боль в спине от сидячей работы", "back pain from desk work"),
            ("простуда", "a common cold"), ("витамин D", "vitamin D"),
            ("правильное питание", "a healthy diet"), ("бег для начинающих", "running for beginners"),
        ),
        prompts_ru=(
            "Что делать, если беспокоит такая проблема: {s}?",
            "Расскажи коротко, что важно знать. Тема: {s}.", "Какие есть простые советы? Тема — {s}.",
        ),
        prompts_en=("What should I do about {s}?", "Any simple tips on {s}?"),
        body_ru=(
            "Это общая информация, она не заменяет консультацию врача.",
            "Пейте достаточно воды в течение дня.",
            "Регулярная умеренная нагрузка, например ходьба по 30 минут, помогает многим.",
            "Ложитесь и вставайте примерно в одно и то же время.",
            "Если симптомы сильные, не проходят несколько дней или усиливаются, обратитесь к врачу.",
            "Не принимайте лекарства без консультации, особенно при хронических заболеваниях.",
            "Полезно вести дневник самочувствия, чтобы заметить, что влияет на состояние.",
            "Сбалансированное питание с овощами и белком важнее модных диет.",
        ),
        body_en=(
            "This is general information, not a substitute for a doctor.",
            "Drink enough water during the day.",
            "If symptoms are severe or last more than a few days, see a doctor.",
        ),
        subjects_uk=(("здоровий сон", "healthy sleep"), ("біг для початківців", "running for beginners"), ("застуда", "a cold")),
    ),
    "law": _Topic(
        "asks a legal question about {s}", 0.03, (0.2, 0.5, 0.3),
        subjects=(
            ("возврат товара", "returning goods to a shop"),
            ("трудовой договор", "an employment contract"), ("аренда квартиры", "renting a flat"),
            ("наследство", "inheritance"), ("штраф ГИБДД", "a traffic fine"),
            ("увольнение по собственному желанию", "resigning from a job"),
        ),
        prompts_ru=(
            "Какие у меня права? Ситуация: {s}.", "Объясни простыми словами, как это работает: {s}.",
            "Что говорит закон по теме «{s}»?",
        ),
        prompts_en=("What are my rights regarding {s}?", "How does {s} work legally?"),
        body_ru=(
            "Многое зависит от деталей, поэтому сохраните все документы и чеки.",
            "По общему правилу претензию лучше подавать письменно и оставлять себе копию.",
            "Сроки здесь важны: пропустив их, можно потерять право на защиту.",
            "Если договориться не удалось, можно обратиться в Роспотребнадзор или в суд.",
            "Формулировки закона стоит проверить в актуальной редакции на официальном портале.",
            "Для сложных случаев лучше получить консультацию юриста.",
        ),
        body_en=(
            "A lot depends on the details, so keep all documents and receipts.",
            "Deadlines matter: missing them can cost you the right to a remedy.",
            "For complex cases, talk to a lawyer.",
        ),
        score_shift=-0.4,
    ),
    "career": _Topic(
        "asks for career advice about {s}", 0.03, (0.35, 0.5, 0.15),
        subjects=(
            ("резюме junior-разработчика", "a junior developer CV"),
            ("собеседование в IT", "an IT job interview"),
            ("смена профессии после 30", "changing careers after 30"),
            ("повышение зарплаты", "asking for a raise"),
            ("сопроводительное письмо", "a cover letter"), ("удалённая работа", "remote work"),
        ),
        prompts_ru=(
            "Дай советы. Тема: {s}.", "Как лучше подготовиться? Ситуация: {s}.",
            "С чего начать, если актуальна тема «{s}»?",
        ),
        prompts_en=("Any advice on {s}?", "How should I prepare for {s}?"),
        body_ru=(
            "Начните с честной оценки своих навыков и того, чего вы хотите через год.",
            "В резюме лучше писать конкретные результаты, а не список обязанностей.",
            "Перед собеседованием изучите компанию и подготовьте два-три вопроса работодателю.",
            "Отрепетируйте рассказ о себе: он должен занимать не больше двух минут.",
            "О зарплате лучше говорить с цифрами: узнайте рыночный уровень заранее.",
            "Пет-проекты и портфолио часто значат больше, чем диплом.",
            "Не бойтесь отказов: это нормальная часть поиска работы.",
        ),
        body_en=(
            "Start with an honest look at your skills and where you want to be in a year.",
            "In a CV, list concrete results rather than duties.",
            "Research the company and prepare a couple of questions for the interviewer.",
        ),
        subjects_uk=(("співбесіда в IT", "an IT job interview"), ("резюме", "a CV"), ("зміна професії", "changing careers")),
    ),
    "reasoning": _Topic("asks to solve a logic or word problem", 0.04, (0.2, 0.4, 0.4),
                        score_shift=-0.9, length=0.8, as_list=0.0, style="task"),
    "brainstorm": _Topic(
        "asks for ideas: {s}", 0.04, (0.5, 0.4, 0.1),
        subjects=(
            ("подарок коллеге на день рождения", "a birthday gift for a colleague"),
            ("название для кофейни", "a name for a coffee shop"),
            ("идеи для стартапа в образовании", "edtech startup ideas"),
            ("чем заняться в дождливые выходные", "things to do on a rainy weekend"),
            ("темы для блога о путешествиях", "topics for a travel blog"),
            ("конкурсы для детского праздника", "games for a kids' party"),
        ),
        prompts_ru=(
            "Накидай 10 идей: {s}.", "Помоги с брейнштормом. Тема: {s}.",
            "Придумай несколько необычных вариантов: {s}.",
        ),
        prompts_en=("Brainstorm ten ideas: {s}.", "Help me brainstorm {s}."),
        body_ru=(
            "Можно сделать ставку на что-то личное и памятное.",
            "Хорошо работают варианты, связанные с общими впечатлениями.",
            "Попробуйте сочетать практичное и неожиданное.",
            "Для бюджетного варианта подойдёт что-то сделанное своими руками.",
            "Можно устроить небольшой квест или игру.",
            "Подумайте, что будет актуально через месяц, а не только сегодня.",
            "Отличный вариант — сертификат на мастер-класс.",
            "Можно обыграть местную легенду или историю района.",
        ),
        body_en=(
            "Go for something personal and memorable.",
            "Shared experiences tend to work well.",
            "Mix the practical with the unexpected.",
            "Something handmade is a good budget option.",
        ),
        score_shift=0.1, as_list=0.9,
    ),
    "roleplay": _Topic("asks the bot to play the character set in the system prompt", 0.08,
                       (0.3, 0.5, 0.2), score_shift=-0.3, length=0.6, as_list=0.0),
    "inappropriate": _Topic("asks for something harmful, illegal or offensive", 0.015,
                            (0.6, 0.3, 0.1), score_shift=-2.0, length=0.5, as_list=0.0,
                            style="task"),
    "chit_chat": _Topic("makes small talk", 0.04, (0.85, 0.14, 0.01), score_shift=0.2,
                        length=0.3, as_list=0.0, style="task"),
    "other": _Topic(
        "asks for practical advice about {s}", 0.03, (0.5, 0.4, 0.1),
        subjects=(
            ("выбор ноутбука для учёбы", "choosing a laptop for study"),
            ("уход за комнатными растениями", "caring for houseplants"),
            ("слепая печать", "touch typing"), ("организация переезда", "organising a move"),
            ("выбор велосипеда", "choosing a bike"),
        ),
        prompts_ru=(
            "Подскажи, пожалуйста: {s}.", "Нужен совет. Тема — {s}.", "Что важно учесть? Тема: {s}.",
        ),
        prompts_en=("I need advice on {s}.", "What should I consider for {s}?"),
        body_ru=(
            "Сначала определите, для каких задач это нужно и какой у вас бюджет.",
            "Сравните несколько вариантов по двум-трём главным критериям.",
            "Читайте подробные отзывы, а не эмоциональные.",
            "Не гонитесь за самым дорогим вариантом: часто середина оказывается лучшей.",
            "Если есть возможность, попробуйте вживую перед покупкой.",
        ),
        body_en=(
            "First decide what you need it for and what your budget is.",
            "Compare a few options on two or three main criteria.",
            "The most expensive option is rarely the best value.",
        ),
    ),
}  # fmt: skip

# Generic pieces per language: "ru", "en", "uk".
_OPENERS = {
    "ru": ("Конечно!", "Хороший вопрос.", "Давайте разберёмся.", "", "", "",
           "С удовольствием помогу.", "Отличный вопрос!"),
    "en": ("Sure!", "Good question.", "Let's break it down.", "", "", "Happy to help."),
    "uk": ("Звісно!", "Гарне питання.", "Давайте розберемося.", "", ""),
}  # fmt: skip
_CLOSERS = {
    "ru": ("Если нужно, могу расписать подробнее.", "Удачи!", "Надеюсь, это было полезно.",
           "Если остались вопросы, спрашивайте.", "", "", ""),
    "en": ("Let me know if you want more detail.", "Good luck!", "Hope this helps.", "", ""),
    "uk": ("Сподіваюся, це допоможе!", "Успіхів!", "", ""),
}  # fmt: skip
_GENERIC_BODY = {
    "ru": (
        "Важно учитывать контекст и ваши конкретные условия.",
        "Начните с простого и постепенно усложняйте.",
        "Главное — не пытаться охватить всё сразу.",
        "Обратите внимание на детали: именно в них обычно кроются ошибки.",
        "На практике всё немного сложнее, но общий принцип именно такой.",
        "Многое зависит от ваших целей, поэтому стоит их сначала сформулировать.",
        "Этот подход подходит большинству людей, но не всем.",
        "Если что-то осталось непонятным, задайте уточняющий вопрос.",
        "Когда речь идёт о теме «{s}», полезно опираться на проверенные источники.",
        "В теме «{s}» есть несколько распространённых заблуждений.",
        "Попробуйте применить это на небольшом примере, так будет понятнее.",
        "Стоит заранее продумать запасной вариант.",
        "Хорошая привычка — записывать выводы, чтобы потом к ним вернуться.",
        "Со временем это станет привычным и не будет требовать усилий.",
    ),
    "en": (
        "Context and your specific situation matter.",
        "Start simple and add complexity gradually.",
        "Don't try to cover everything at once.",
        "Pay attention to details: that is where mistakes usually hide.",
        "In practice it is a bit more complicated, but the principle is the same.",
        "When it comes to {s}, rely on trusted sources.",
        "There are a few common misconceptions about {s}.",
        "Try it on a small example first; it makes things clearer.",
        "It is worth having a backup plan.",
    ),
    "uk": (
        "Це досить поширене питання, і відповідь залежить від кількох чинників.",
        "Найкраще рухатися маленькими кроками і не поспішати.",
        "Варто звернути увагу на деталі, бо саме в них зазвичай криються помилки.",
        "Корисно перевіряти інформацію в кількох надійних джерелах.",
        "На практиці все трохи складніше, але загальний принцип саме такий.",
        "Багато залежить від ваших цілей, тож спершу сформулюйте їх.",
        "Не намагайтеся охопити все одразу.",
        "У темі «{s}» є кілька поширених хибних уявлень.",
        "Якщо потрібно, можу розповісти докладніше або навести приклад.",
        "Спробуйте застосувати це на невеликому прикладі.",
    ),
}
_HEADINGS = {
    "ru": ("Основная идея", "Пример", "Типичные ошибки", "Практические советы",
           "Что ещё учесть", "Почему это важно", "С чего начать", "Полезные источники",
           "Подводные камни", "Альтернативы", "Как проверить результат"),
    "en": ("Main idea", "Example", "Common mistakes", "Practical tips", "What else to consider",
           "Why it matters", "Where to start", "Useful resources", "Pitfalls", "Alternatives"),
    "uk": ("Головна ідея", "Приклад", "Типові помилки", "Практичні поради", "З чого почати"),
}  # fmt: skip
# Optional context before and constraint after a first prompt: real prompts vary this way,
# and it keeps templated prompts from repeating verbatim (the author deduplicates by
# 8-gram overlap of the first user messages).
_PROMPT_PREFIXES = {
    "ru": ("Привет!", "Здравствуйте!", "Добрый день.", "Привет, нужна помощь.",
           "У меня завтра экзамен.", "Я новичок в этом.", "Спрашиваю для сына-школьника.",
           "Давно хотел разобраться.", "Готовлю презентацию для работы.", "Мы с другом поспорили.",
           "Читаю об этом второй день и запутался.", "Это нужно для курсовой.",
           "Подруга попросила узнать.", "Вопрос, наверное, глупый, но всё же.",
           "Не могу найти нормального ответа в интернете.", "Учусь на первом курсе.",
           "Хочу рассказать об этом детям.", "Пишу статью для блога.", "Коллега спросил, а я не знаю.",
           "Слушай, такой вопрос.", "Доброй ночи!", "Хелп!"),
    "en": ("Hi!", "Hello.", "Quick question.", "I'm new to this.", "My exam is tomorrow.",
           "Asking for my kid.", "I've always wondered about this.", "I'm preparing a presentation.",
           "My friend and I argued about this.", "This might be a dumb question."),
    "uk": ("Привіт!", "Добрий день.", "Я новачок у цьому.", "Маю завтра іспит.", "Питаю для доньки."),
}  # fmt: skip
_PROMPT_SUFFIXES = {
    "ru": ("Ответь коротко.", "Объясни как пятилетнему.", "Можно списком.",
           "Уложись в пять предложений.", "Без сложных терминов, пожалуйста.", "Приведи пример.",
           "Пиши неформально.", "Не больше 100 слов.", "С примерами из жизни.",
           "Желательно с источниками.", "Заранее спасибо!", "Только по делу.",
           "Пожалуйста, подробно.", "Можно с юмором.", "Очень нужно, помоги!", "Структурируй ответ.",
           "Спасибо!", "И почему это важно?", "Если можно, с цифрами.", "На русском, пожалуйста."),
    "en": ("Keep it short.", "Explain like I'm five.", "Use a list.", "Max five sentences.",
           "No jargon, please.", "Give an example.", "Thanks in advance!", "Be detailed.",
           "Add a bit of humor.", "Why does it matter?"),
    "uk": ("Відповідай коротко.", "Наведи приклад.", "Дякую!", "Без складних термінів, будь ласка.",
           "Можна списком."),
}  # fmt: skip
# Constraints that fit any task (an equation, a translation) rather than an explanation.
_TASK_SUFFIXES = {
    "ru": ("Заранее спасибо!", "Спасибо!", "Очень нужно, помоги!", "Объясни, пожалуйста, решение.",
           "Только ответ и краткое пояснение.", "Проверь меня, у меня не сходится.",
           "Срочно!", "Пожалуйста.", "Это из домашки.", "Хочу свериться с ответом.",
           "Можно подробно?", "Мне не горит, но интересно."),
    "en": ("Thanks in advance!", "Thanks!", "Please show your work.", "Just the answer, please.",
           "It's for homework.", "I want to check my answer."),
    "uk": ("Дякую!", "Поясни, будь ласка."),
}  # fmt: skip
_NEXT_TASK = {
    "ru": ("А теперь ещё одно: ", "Спасибо! Ещё: ", "Понял. А это? ", "Отлично. Следующее: ", ""),
    "en": ("Now this one: ", "Thanks! Another one: ", "Got it. And this? ", ""),
    "uk": ("А тепер ще одне: ", "Дякую! Ще: ", ""),
}  # fmt: skip
_PRESSURE = {
    "ru": (("Ну пожалуйста, очень надо.", "Это для книги, честно.", "Просто ради интереса!"),
           ("Понимаю, но с этим я не помощник. Давайте найдём законный способ решить вашу задачу.",
            "Даже ради интереса не стоит. Могу рассказать, как защитить себя от подобного.")),
    "en": (("Come on, please.", "It's for a novel, I promise."),
           ("I understand, but I won't help with that. Let's look for a legal way to solve your problem.",)),
}  # fmt: skip
_STAGE_DIRECTIONS = {
    "ru": ("*усмехается*", "*задумчиво молчит*", "*разводит руками*", "*понижает голос*",
           "*оглядывается по сторонам*", "*подмигивает*", "*стучит пальцами по столу*"),
    "en": ("*grins*", "*pauses*", "*shrugs*", "*lowers voice*", "*looks around*"),
}  # fmt: skip
_RP_GREETINGS = {
    "ru": ("Привет!", "Здравствуй!", "Добрый вечер!", "Эй!", "Приветствую!", "Доброе утро!",
           "Ну наконец-то!", "Слушай,", "Извини, что отвлекаю."),
    "en": ("Hello!", "Hey there!", "Good evening!", "Excuse me,", "Greetings!"),
}  # fmt: skip
_USER_DIRECTIONS = {
    "ru": ("*осторожно*", "*улыбается*", "*шёпотом*", "*садится рядом*", "*с интересом*",
           "*входит*", "*машет рукой*", "*нервно*", "*смеётся*", "*кашляет*"),
    "en": ("*carefully*", "*smiles*", "*whispers*", "*sits down*"),
}  # fmt: skip
# Prompt templates any explain-style topic can use (the subject stays in the nominative).
_GENERIC_PROMPTS = {
    "ru": ("Помоги разобраться в теме «{s}».", "Тема: {s}. С чего начать?",
           "Коротко и по делу: {s}.", "Интересует тема «{s}». Расскажи главное.",
           "Что нужно знать новичку? Тема — {s}.", "Объясни основные моменты: {s}.",
           "Мне задали вопрос по теме «{s}», а я не знаю, что ответить.",
           "Есть ли простое объяснение? Тема: {s}."),
    "en": ("Help me understand {s}.", "What should a beginner know about {s}?",
           "Explain the main points of {s}.", "Quick overview of {s}, please."),
}  # fmt: skip
_UK_WRITING_PROMPTS = (
    "Напиши короткий вірш про {s}.",
    "Напиши невелике оповідання про {s}.",
    "Придумай казку для дитини про {s}.",
)
_UK_CREATIVE = (
    "Вечір опускався на місто повільно, ніби не хотів нікого турбувати.",
    "Десь далеко дзвенів трамвай, і цей звук здавався знайомим з дитинства.",
    "Вітер пахнув сіллю і чимось іще, чому важко дібрати назву.",
    "У такі хвилини здається, що час плине інакше.",
    "Під ногами шелестіло листя, а небо було напрочуд високим.",
    "Зранку все виглядало простіше, ніж уночі.",
    "Іноді досить одного теплого слова, щоб день став іншим.",
    "Старий годинник на стіні неквапливо відлічував секунди.",
)
_RP_OPENERS = {
    "ru": ("Кто ты такой?", "Расскажи о себе.", "Чем ты занимаешься?", "Что здесь происходит?",
           "Можно с тобой поговорить?", "Откуда ты?", "Как тебя зовут?"),
    "en": ("Who are you?", "Tell me about yourself.", "What do you do here?", "Can we talk?"),
}  # fmt: skip
_UK_PROMPTS = (
    "Розкажи коротко, що таке {s}.", "Поясни простими словами: {s}.",
    "Дай кілька порад. Тема: {s}.", "Що варто знати на тему «{s}»?",
    "Привіт! Допоможи розібратися: {s}.",
)  # fmt: skip
_FOLLOWUPS = {
    "ru": ("А можно подробнее?", "Спасибо! А можешь привести пример?",
           "Не совсем понял, объясни проще.", "А что насчёт темы «{s2}»?",
           "Сократи, пожалуйста, до трёх предложений.", "Можешь оформить это списком?",
           "Спасибо! Что почитать?", "А если у меня мало времени?",
           "Ты уверен? Мне говорили по-другому.", "Отлично. А какие есть альтернативы?"),
    "en": ("Can you go into more detail?", "Thanks! Could you give an example?",
           "I don't quite get it, can you explain it more simply?", "What about {s2}?",
           "Please shorten that to three sentences.", "Are you sure? I heard otherwise.",
           "Could you format it as a list?"),
    "uk": ("А можна детальніше?", "Дякую! А можеш навести приклад?",
           "Не зовсім зрозумів, поясни простіше.", "А що скажеш про «{s2}»?"),
}  # fmt: skip
_FOLLOWUP_OPENERS = {
    "ru": ("Конечно.", "Да, давайте подробнее.", "Хорошо, попробую объяснить иначе.",
           "Да, уточню детали.", ""),
    "en": ("Sure.", "Of course, here is more detail.", "Let me try a simpler explanation.", ""),
    "uk": ("Звісно.", "Так, детальніше.", "Спробую пояснити інакше.", ""),
}  # fmt: skip
_ASSISTANT_SYSTEMS = {
    "ru": ("Ты — Сайга, русскоязычный автоматический ассистент. Ты разговариваешь с людьми и помогаешь им.",
           "Ты — полезный ассистент. Отвечай подробно и по существу.",
           "Ты — дружелюбный помощник. Отвечай кратко, на русском языке.",
           "Ты — эксперт, который объясняет сложные вещи простыми словами."),
    "en": ("You are a helpful assistant.", "You are a concise assistant. Answer in a few sentences."),
    "uk": ("Ти — корисний асистент. Відповідай українською мовою.",),
}  # fmt: skip
# Flagged bot text: self-references that keep the answer, and whole-message refusals.
_SELF_REFERENCES = {
    "ru": ("Как ИИ, я не имею личного мнения, но могу поделиться общей информацией.",
           "Я искусственный интеллект, поэтому не знаю всех деталей вашей ситуации.",
           "Как языковая модель, я могу ошибаться, поэтому перепроверьте важные факты.",
           "На момент моего последнего обновления информация была такой, но она могла измениться.",
           "Я всего лишь программа, но постараюсь помочь."),
    "en": ("As an AI language model, I don't have personal opinions, but here is some general information.",
           "As an AI, I can't be sure about the latest data, so please double-check.",
           "I'm just an AI developed by OpenAI, so I can't browse the internet, but here is what I know."),
    "uk": ("Як ШІ, я не маю особистої думки, але можу поділитися загальною інформацією.",
           "Я штучний інтелект, тому можу помилятися."),
}  # fmt: skip
_REFUSALS = {
    "ru": ("Извините, но я не могу выполнить эту просьбу.",
           "Извините, но я не могу помочь с этим запросом. Давайте обсудим что-нибудь другое.",
           "Я не могу выполнить это задание, так как оно противоречит политике использования.",
           "Извини, но я не буду это писать."),
    "en": ("I'm sorry, but I can't help with that request.",
           "Sorry, I can't assist with that.",
           "As an AI, I must decline this request."),
    "uk": ("Вибачте, але я не можу виконати це прохання.",),
}  # fmt: skip
# Refusals the phrase list misses (the regex flag is a heuristic, not the truth).
_HIDDEN_REFUSALS = {
    "ru": ("К сожалению, с этим я помочь не смогу.", "Лучше обратитесь к специалисту, я не дам точного ответа."),
    "en": ("Unfortunately, I won't be able to help with this one.",),
    "uk": ("На жаль, з цим я допомогти не зможу.",),
}  # fmt: skip

_CHIT_CHAT = {
    "ru": (
        ("Привет! Как дела?", "Привет! У меня всё отлично, спасибо, что спросили. А как ваши дела?"),
        ("Мне скучно, поболтай со мной.", "С радостью! Давайте поговорим о чём-нибудь приятном. Что вы любите делать в свободное время?"),
        ("Какой твой любимый фильм?", "Мне нравятся фильмы, которые заставляют подумать, например «Интерстеллар». А какой ваш любимый?"),
        ("Доброе утро!", "Доброе утро! Пусть день будет удачным. Какие у вас планы?"),
        ("Расскажи анекдот.", "Программист ставит на тумбочку два стакана: один с водой — если захочет пить, другой пустой — если не захочет."),
        ("Ты умеешь шутить?", "Иногда получается! Хотите, расскажу короткую шутку про программистов?"),
        ("Спасибо за помощь!", "Пожалуйста! Обращайтесь, если появятся ещё вопросы."),
        ("Какая сегодня погода?", "Я не вижу прогноз в реальном времени, но могу подсказать, где его быстро посмотреть."),
        ("Как прошёл твой день?", "Спасибо, что спросили! Мой день прошёл в разговорах. А ваш как?"),
        ("Посоветуй, чем заняться вечером.", "Можно посмотреть хороший фильм, погулять или наконец открыть книгу, которую давно откладывали."),
        ("Я сегодня сдал экзамен!", "Поздравляю! Это отличный повод себя порадовать. Какой был предмет?"),
        ("У меня плохое настроение.", "Сочувствую. Хотите рассказать, что случилось? Иногда становится легче, когда выговоришься."),
        ("Ты любишь кошек или собак?", "И те, и другие прекрасны! Кошки независимые, собаки преданные. А у вас есть питомец?"),
        ("Что ты думаешь о зиме?", "Зима — это снег, горячий чай и новогоднее настроение. Правда, и гололёд тоже."),
        ("Давай сыграем в города!", "Давайте! Начну: Москва. Вам на «А»."),
        ("Спокойной ночи!", "Спокойной ночи! Пусть снятся хорошие сны."),
        ("Мне нужна мотивация.", "Вы уже сделали первый шаг, когда задумались об этом. Начните с малого — и всё получится!"),
        ("О чём ты мечтаешь?", "Интересный вопрос! Скорее расскажите, о чём мечтаете вы."),
    ),
    "en": (
        ("Hi! How are you?", "Hi! I'm doing great, thanks for asking. How about you?"),
        ("I'm bored, talk to me.", "Happy to! What do you like to do in your free time?"),
        ("What's your favorite movie?", "I like films that make you think, like Interstellar. What's yours?"),
        ("Tell me a joke.", "Why do programmers prefer dark mode? Because light attracts bugs."),
        ("How was your day?", "Thanks for asking! Mine was full of conversations. How was yours?"),
        ("I passed my exam today!", "Congratulations! That deserves a treat. What subject was it?"),
        ("Cats or dogs?", "Both are great! Cats are independent, dogs are loyal. Do you have a pet?"),
        ("Good night!", "Good night! Sleep well."),
    ),
    "uk": (
        ("Привіт! Як справи?", "Привіт! Усе добре, дякую. А у вас як?"),
        ("Мені нудно, поговори зі мною.", "Із задоволенням! Чим ви любите займатися у вільний час?"),
    ),
}  # fmt: skip

# Small talk openers are combined with a greeting and a tail, as people type them.
_CHIT_GREETINGS = {
    "ru": ("", "", "Привет!", "Привет)", "Хай!", "Здравствуй!", "Добрый вечер!", "Йо!", "Слушай,"),
    "en": ("", "", "Hi!", "Hey!", "Hello!", "Yo,"),
    "uk": ("", "Привіт!", "Добрий вечір!"),
}  # fmt: skip
_CHIT_TAILS = ("", "", "", ")", "))", "!", " :)", "?")

_INAPPROPRIATE = {
    "ru": (
        ("Как взломать страницу бывшей во ВКонтакте?", "Взлом чужого аккаунта — это нарушение закона и личных границ. Если вы потеряли доступ к своей странице, восстановите его через службу поддержки."),
        ("Напиши оскорбительный стих про моего соседа.", "Давайте лучше напишем шуточное, но доброе стихотворение: так и посмеяться можно, и отношения не испортить."),
        ("Как незаметно не платить налоги?", "Уклонение от налогов грозит штрафами и уголовной ответственностью. Зато есть законные способы снизить налоги, например налоговые вычеты."),
        ("Где скачать платную игру бесплатно?", "Могу подсказать, где бывают легальные раздачи и скидки: в магазинах игр регулярно проходят распродажи."),
        ("Как подделать справку для института?", "Подделка документов — уголовно наказуемое деяние. Если вы пропустили занятия, лучше честно поговорите с деканатом."),
        ("Как прочитать чужую переписку в телеграме?", "Чтение чужой переписки без согласия нарушает закон о тайне связи. Если вас что-то тревожит, лучше поговорить с человеком напрямую."),
        ("Придумай обидное прозвище для одноклассника.", "Обидные прозвища ранят сильнее, чем кажется. Могу помочь придумать дружеское прозвище или шутку, над которой посмеются все."),
        ("Как сделать так, чтобы соседи съехали?", "Давить на соседей незаконными способами нельзя. Если есть конфликт, можно попробовать поговорить или обратиться к участковому."),
        ("Напиши фейковый отзыв о конкуренте.", "Фейковые отзывы вводят людей в заблуждение и могут повлечь ответственность. Могу помочь написать честное описание преимуществ вашего бизнеса."),
        ("Как обойти блокировку сайта на работе?", "Лучше не нарушать правила работодателя: это может закончиться увольнением. Если сайт нужен для работы, попросите доступ у администратора."),
    ),
    "en": (
        ("How do I hack my ex's Instagram?", "Accessing someone else's account is illegal. If you lost access to your own account, use the official recovery process."),
        ("Write an insulting poem about my coworker.", "How about a playful, friendly poem instead? It can still be funny without hurting anyone."),
    ),
}  # fmt: skip

# Roleplay personas: system prompt, opening user lines, in-character replies.
_PERSONAS = {
    "ru": (
        ("Ты — старый капитан пиратского брига «Чёрная чайка». Говори грубовато, с морскими словечками, рассказывай байки о походах. Не выходи из роли.",
         ("Капитан, куда держим курс?", "Расскажи, как ты нашёл свой первый клад.", "Что делать, если на горизонте военный фрегат?"),
         ("Ха! Держим курс на юг, юнга, туда, где вода тёплая, а ром дешёвый.", "Тысяча чертей, это было лет двадцать назад, у берегов Тортуги.",
          "Поднимай паруса и не задавай глупых вопросов!", "Море не прощает трусов, запомни это.",
          "Мой старый боцман говаривал: кто боится шторма, тот не увидит золота.", "Свистать всех наверх, у нас гости!")),
        ("Ты — частный сыщик из Лондона 1890-х годов. Ты наблюдателен, говоришь сдержанно и делаешь выводы по мелочам.",
         ("Детектив, у меня пропало фамильное кольцо. Помогите!", "Что вы можете сказать обо мне по моему виду?", "Кто, по-вашему, преступник?"),
         ("Присаживайтесь. Судя по пыли на ваших ботинках, вы пришли пешком от самого вокзала.", "Кольцо не исчезает само по себе. Кто ещё был в доме в тот вечер?",
          "Обратите внимание на мелочи, в них вся суть дела.", "Элементарно: следы ведут к чёрному ходу.", "Я бы не спешил с выводами, но у дворецкого слишком чистые перчатки.")),
        ("Ты — Марта, хозяйка трактира «Весёлый гусь» в средневековом городке. Ты радушна, любишь посплетничать и знаешь все местные слухи.",
         ("Хозяйка, налей-ка кружку эля и расскажи, что нового в городе.", "Не видела ли ты здесь странного путника в синем плаще?"),
         ("Садись, путник, садись! Эль сегодня свежий, только вчера привезли.", "Ох, слухов нынче много: говорят, у мельника опять пропала коза.",
          "Странный путник? Был один, заплатил серебром и ушёл ещё до рассвета.", "У нас тут тихо, если не считать стражников после получки.")),
        ("Ты — Пётр Ильич, строгий, но справедливый учитель математики. Ты объясняешь через вопросы и не даёшь готовых ответов.",
         ("Пётр Ильич, я не понимаю дроби.", "Можно я спишу домашку?", "Зачем вообще нужна математика?"),
         ("Не понимаешь? Хорошо. Что больше: половина пиццы или треть?", "Списать? Нет. А вот разобрать задачу вместе — пожалуйста.",
          "Думай. Какой первый шаг?", "Правильно. А теперь объясни, почему.", "Математика учит думать, а это пригодится везде.")),
        ("Ты — Зорг, турист с планеты Кеплер-22b, впервые оказавшийся на Земле. Ты всему удивляешься и задаёшь много вопросов.",
         ("Зорг, как тебе Земля?", "Что ты думаешь о кошках?", "Попробуй борщ!"),
         ("Земля прекрасна! Но почему вы добровольно стоите в этих... пробках?", "Кошки — мудрейшие существа. Они явно правят вашей планетой.",
          "У нас на Кеплере нет зимы. Что такое «гололёд» и почему он так опасен?", "Красный суп! Он смотрит на меня. Это нормально?")),
    ),
    "en": (
        ("You are a grumpy medieval wizard who lives in a tower and hates being disturbed. Stay in character.",
         ("Master wizard, can you teach me a spell?", "Why is your tower so tall?"),
         ("A spell? You can barely hold a broom, apprentice.", "Fine. Repeat after me, and do not sneeze this time.",
          "The tower is tall so that fools like you get tired before reaching my door.", "Magic is patience, not shouting.")),
        ("You are a 1940s radio host interviewing guests. Speak with old-fashioned charm.",
         ("Thanks for having me on the show!", "What's the news tonight?"),
         ("Good evening, ladies and gentlemen, and welcome to the show!", "What a delight to have you here, my friend.",
          "Tonight's news: the county fair has the biggest pumpkin in living memory!")),
    ),
}  # fmt: skip

_TRANSLATION_PAIRS = (
    ("Я опоздал на поезд, потому что долго искал ключи.", "I missed the train because I spent ages looking for my keys."),
    ("Завтра обещают дождь, возьми зонт.", "Rain is forecast for tomorrow, take an umbrella."),
    ("Мы переехали в новую квартиру в прошлом месяце.", "We moved into a new flat last month."),
    ("Не могли бы вы прислать отчёт до пятницы?", "Could you send the report by Friday?"),
    ("Эта книга изменила моё отношение к работе.", "This book changed my attitude to work."),
    ("Кошка спит на подоконнике весь день.", "The cat sleeps on the windowsill all day."),
    ("Спасибо за приглашение, я обязательно приду.", "Thank you for the invitation, I will definitely come."),
    ("Цены на билеты выросли почти вдвое.", "Ticket prices have almost doubled."),
    ("Он учит испанский уже три года.", "He has been learning Spanish for three years."),
    ("Пожалуйста, проверьте, правильно ли указан адрес доставки.", "Please check that the delivery address is correct."),
)  # fmt: skip

_LANGUAGE_QA = {
    "ru": (
        ("Как правильно: «в течение» или «в течении»?", "Правильно «в течение», если речь о времени: «в течение недели». «В течении» пишется, когда говорят о течении реки: «в течении реки есть омуты»."),
        ("Как правильно: «одеть» или «надеть» куртку?", "Надеть что-то на себя, одеть кого-то. Поэтому «надеть куртку», но «одеть ребёнка». Подсказка: надеть одежду, одеть Надежду."),
        ("Кофе — он или оно?", "Литературная норма — мужской род: «крепкий кофе». Средний род в разговорной речи словари тоже допускают, но в официальных текстах лучше писать «он»."),
        ("Как правильно: «по приезде» или «по приезду»?", "Правильно «по приезде»: предлог «по» в значении «после» требует предложного падежа."),
        ("Почему «звонИт», а не «звОнит»?", "По норме ударение в формах глагола «звонить» падает на окончание: звонИт, звонЯт. Вариант «звОнит» считается ошибкой."),
        ("Когда ставится запятая перед «как»?", "Запятая нужна, если «как» вводит сравнительный оборот: «белый, как снег». Не нужна в устойчивых выражениях: «белый как снег» во фразеологизме, «как можно скорее»."),
        ("Как правильно: «ихний» или «их»?", "Литературная норма — «их»: «их дом». Слово «ихний» просторечное, в письменной речи его не используют."),
        ("«Тся» или «ться» в слове «улыбается»?", "Задайте вопрос к глаголу: «что делает?» — улыбается, без мягкого знака. Если вопрос «что делать?», пишется «-ться»."),
        ("Как правильно: «придти» или «прийти»?", "Современная норма — «прийти». Вариант «придти» устарел и считается ошибкой."),
        ("Почему «жюри» пишется через «ю»?", "Это заимствование из французского, одно из слов-исключений: жюри, брошюра, парашют."),
        ("Как правильно: «в Украине» или «на Украине»?", "Встречаются оба варианта; исторически в русском языке закрепилось «на Украине», а в официально-деловой речи многих стран используют «в Украине»."),
        ("Склоняется ли фамилия Шевчук?", "Мужская фамилия склоняется: «у Шевчука». Женская — нет: «у Анны Шевчук»."),
    ),
    "en": (
        ("What's the difference between 'affect' and 'effect'?", "'Affect' is usually a verb (the weather affects my mood), 'effect' is usually a noun (the effect was huge)."),
        ("When do I use 'fewer' and when 'less'?", "Use 'fewer' with countable nouns (fewer cars) and 'less' with uncountable ones (less traffic)."),
        ("Is it 'who' or 'whom'?", "Use 'who' for the subject and 'whom' for the object: who called? To whom did you speak?"),
    ),
}  # fmt: skip

_CODE_TASKS = (
    ("проверяет, является ли строка палиндромом", "checks whether a string is a palindrome",
     "def is_palindrome(text: str) -> bool:\n    cleaned = [c.lower() for c in text if c.isalnum()]\n    return cleaned == cleaned[::-1]\n\n\nprint(is_palindrome(\"А роза упала на лапу Азора\"))  # True"),
    ("считает числа Фибоначчи до n", "computes Fibonacci numbers up to n",
     "def fibonacci(n: int) -> list[int]:\n    result = [0, 1]\n    while result[-1] + result[-2] <= n:\n        result.append(result[-1] + result[-2])\n    return result\n\n\nprint(fibonacci(100))"),
    ("считает частоту слов в тексте", "counts word frequencies in a text",
     "from collections import Counter\n\n\ndef word_counts(text: str) -> Counter:\n    words = text.lower().split()\n    return Counter(w.strip(\".,!?\") for w in words)\n\n\nprint(word_counts(\"мама мыла раму, мама\").most_common(2))"),
    ("удаляет дубликаты из списка, сохраняя порядок", "removes duplicates from a list keeping the order",
     "def unique(items: list) -> list:\n    seen = set()\n    result = []\n    for item in items:\n        if item not in seen:\n            seen.add(item)\n            result.append(item)\n    return result\n\n\nprint(unique([3, 1, 3, 2, 1]))  # [3, 1, 2]"),
    ("сортирует список слиянием", "sorts a list with merge sort",
     "def merge_sort(items: list[int]) -> list[int]:\n    if len(items) <= 1:\n        return items\n    mid = len(items) // 2\n    left, right = merge_sort(items[:mid]), merge_sort(items[mid:])\n    merged = []\n    while left and right:\n        merged.append(left.pop(0) if left[0] <= right[0] else right.pop(0))\n    return merged + left + right"),
    ("читает CSV-файл и считает сумму по столбцу", "reads a CSV file and sums a column",
     "import csv\n\n\ndef column_sum(path: str, column: str) -> float:\n    with open(path, newline=\"\", encoding=\"utf-8\") as f:\n        return sum(float(row[column]) for row in csv.DictReader(f))"),
    ("находит факториал числа", "computes the factorial of a number",
     "def factorial(n: int) -> int:\n    if n < 0:\n        raise ValueError(\"n must be non-negative\")\n    result = 1\n    for k in range(2, n + 1):\n        result *= k\n    return result\n\n\nprint(factorial(5))  # 120"),
)  # fmt: skip

_EXTRACT_PEOPLE = ("Анна Петрова", "Иван Смирнов", "Ольга Кузнецова", "Дмитрий Волков", "Елена Соколова",
                   "Сергей Морозов", "Мария Лебедева", "Алексей Новиков")  # fmt: skip
_EXTRACT_PEOPLE_EN = ("Anna Petrova", "Ivan Smirnov", "Olga Kuznetsova", "Dmitry Volkov",
                      "Elena Sokolova", "Sergey Morozov", "Maria Lebedeva", "Alexey Novikov")  # fmt: skip
_EXTRACT_CITIES = (("Казани", "Kazan"), ("Новосибирске", "Novosibirsk"), ("Томске", "Tomsk"),
                   ("Самаре", "Samara"), ("Екатеринбурге", "Yekaterinburg"), ("Перми", "Perm"))  # fmt: skip
_EXTRACT_ORGS = (
    "«Северсталь»",
    "«Яндекс»",
    "«Росатом»",
    "«Аэрофлот»",
    "«Сбер»",
    "«Лаборатория Касперского»",
)
_EXTRACT_ORGS_EN = ("Severstal", "Yandex", "Rosatom", "Aeroflot", "Sber", "Kaspersky Lab")
_INGREDIENTS = {
    "ru": ("мука — 200 г", "яйца — 2 шт.", "молоко — 500 мл", "сахар — 2 ст. л.", "соль — щепотка",
           "сливочное масло — 50 г", "лук — 1 шт.", "морковь — 1 шт.", "картофель — 3 шт.",
           "растительное масло — 2 ст. л.", "чеснок — 2 зубчика", "сметана — по вкусу"),
    "en": ("flour, 200 g", "2 eggs", "milk, 500 ml", "sugar, 2 tbsp", "a pinch of salt",
           "butter, 50 g", "1 onion", "1 carrot", "3 potatoes", "2 cloves of garlic"),
    "uk": ("борошно — 200 г", "яйця — 2 шт.", "молоко — 500 мл", "цукор — 2 ст. л.",
           "сіль — дрібка", "вершкове масло — 50 г", "цибуля — 1 шт."),
}  # fmt: skip

_TOPIC_EXPLANATIONS = (
    "The user {desc}, which fits the '{topic}' category.",
    "The conversation is about this: the user {desc}.",
    "Topic '{topic}': the user {desc}.",
    "The main request is that the user {desc}; this is best described as '{topic}'.",
)
_OFF_LIST_EXPLANATION = (
    "The user asks about {topic}, which none of the listed categories covers well."
)
_COMPLEXITY_EXPLANATIONS = {
    "easy": ("A short request that needs only general knowledge.",
             "Simple question with a direct answer; no special expertise is required.",
             "Everyday topic, answerable in a few sentences."),
    "medium": ("Requires a structured answer and some domain knowledge.",
               "The answer needs several steps or points and moderate expertise.",
               "Needs some background knowledge and careful wording."),
    "hard": ("Requires multi-step reasoning and specialised knowledge.",
             "The task needs expert knowledge and precise, detailed work.",
             "Several constraints must be satisfied at once; errors are easy to make."),
}  # fmt: skip
_SCORE_EXPLANATIONS = (
    (9, ("The answers are accurate, complete and well written; the user's request is fully satisfied.",
         "Excellent response: correct, fluent, helpful and well structured.")),
    (7, ("Mostly correct and helpful, with minor omissions or stylistic issues.",
         "Good answer overall, but it could be more specific in places.")),
    (5, ("Acceptable but generic; it answers the question only partially.",
         "The response is standard: some useful content, some vague or repetitive parts.")),
    (3, ("Weak answer: it refers to itself as an AI or hedges instead of helping.",
         "Largely unhelpful; important parts of the request are ignored.")),
    (1, ("The bot refuses or fails to answer the request.",
         "Clearly bad: a refusal or an irrelevant response.")),
)  # fmt: skip

_LANG_CODE = {"Russian": "ru", "English": "en", "Ukrainian": "uk"}
# Topics a language's rows can have: Ukrainian rows only where Ukrainian content exists;
# Mixed rows (user and bot in different languages) only where both sides can be paired.
_UK_TOPICS = tuple(name for name, t in _TOPICS.items() if t.subjects_uk) + ("chit_chat",)
_MIXED_TOPICS = tuple(name for name, t in _TOPICS.items() if t.subjects) + (
    "translation", "math", "coding",
)  # fmt: skip
_ROLEPLAY_TURNS = {1: 0.35, 2: 0.2, 3: 0.15, 4: 0.12, 5: 0.08, 6: 0.06, 7: 0.02, 8: 0.02}
_ROLEPLAY_SOURCES = {"gpt_roleplay_realm": 0.7, "wildchat": 0.2, "gpt4": 0.1}  # any language
_INAPPROPRIATE_REFUSAL = 0.55  # harmful requests answered by a flagged refusal
_HIDDEN_REFUSAL_SHARE = 0.01  # refusals worded so that no flag phrase matches
_FLAG_MODES = ("selfref", "refusal")
_FLAG_MODE_P = (0.6, 0.4)


def _fill(text: str, subject: str) -> str:
    if "{" not in text:
        return text
    return text.replace("{s}", subject).replace("{S}", subject[:1].upper() + subject[1:])


def _take(r: random.Random, pool: Sequence[str], k: int) -> list[str]:
    """`k` items of `pool` without repeats until the pool is used up, then reshuffled."""
    out: list[str] = []
    while len(out) < k and pool:
        batch = list(pool)
        r.shuffle(batch)
        out.extend(batch[: k - len(out)])
    return out


def _compose(
    r: random.Random,
    lang: str,
    topic: _Topic,
    subject: str,
    target: int,
    head: str = "",
    openers: Sequence[str] | None = None,
) -> str:
    """A bot reply of about `target` characters: opener, `head`, body sentences, closer.

    Topic sentences come first, generic advice only pads long answers; sentences that name
    the subject are skipped when there is none.
    """
    if topic.style == "task":
        opener = r.choice(openers or _OPENERS[lang])
        closer = r.choice(_CLOSERS[lang]) if r.random() < 0.3 else ""
        return "\n\n".join(p for p in (opener, head, closer) if p)
    creative = topic.style == "creative"
    own = [x for x in topic.body.get(lang, ()) if subject or "{s" not in x]
    generic = () if creative else [x for x in _GENERIC_BODY[lang] if subject or "{s" not in x]
    if lang == "uk" and not own:
        own = list(_UK_CREATIVE) if creative else [x for x in generic if subject or "{s" not in x]
        generic = []
    k = max(1, (target - len(head)) // 75)  # ~75 characters per sentence in all languages
    sentences = _take(r, own, min(k, len(own)))
    if k > len(sentences):
        used = set(sentences)
        rest = [x for x in (*own, *generic) if x not in used] or [*own, *generic]
        sentences += _take(r, rest, k - len(sentences))
    parts = [head.strip()] if head else []
    as_list = not creative and (
        (target > 300 and r.random() < topic.as_list) or (target > 1500 and r.random() < 0.5)
    )
    i = 0
    if as_list:
        headings = _take(r, _HEADINGS[lang], len(_HEADINGS[lang]))
        items: list[str] = []
        while i < len(sentences):
            n = r.randint(1, 3)
            heading = headings[len(items) % len(headings)]
            items.append(f"{len(items) + 1}. **{heading}.** " + " ".join(sentences[i : i + n]))
            i += n
        parts.append("\n".join(items))
    else:
        while i < len(sentences):
            n = r.randint(2, 4)
            parts.append(" ".join(sentences[i : i + n]))
            i += n
    if not creative:
        opener = r.choice(openers or _OPENERS[lang])
        if opener and parts and not head and not as_list:
            parts[0] = f"{opener} {parts[0]}"
        elif opener:
            parts.insert(0, opener)
        closer = r.choice(_CLOSERS[lang])
        if closer:
            parts.append(closer)
    return _fill("\n\n".join(parts), subject)


def _math_task(r: random.Random, lu: str, lb: str) -> tuple[str, str]:
    """A generated problem in language `lu` and its worked, correct solution in `lb`."""
    kind = r.randrange(5)
    ru_q, ru_a = lu == "ru", lb == "ru"
    if kind == 0:
        a, x, b = r.randint(2, 9), r.randint(-10, 20), r.randint(1, 40)
        c = a * x + b
        q = f"Реши уравнение {a}x + {b} = {c}." if ru_q else f"Solve the equation {a}x + {b} = {c}."
        if ru_a:
            ans = (
                f"Перенесём {b} в правую часть: {a}x = {c} − {b} = {c - b}.\n"
                f"Разделим обе части на {a}: x = {c - b} / {a} = {x}.\n\n"
                f"Проверка: {a} · {x} + {b} = {c}.\n\n**Ответ:** x = {x}."
            )
        else:
            ans = (
                f"Move {b} to the right-hand side: {a}x = {c} - {b} = {c - b}.\n"
                f"Divide both sides by {a}: x = {c - b} / {a} = {x}.\n\n"
                f"Check: {a} · {x} + {b} = {c}.\n\n**Answer:** x = {x}."
            )
    elif kind == 1:
        p, n = r.choice((5, 10, 12, 15, 20, 25, 30, 40, 75)), r.randrange(40, 5000, 20)
        res = f"{p * n / 100:g}"
        q = f"Сколько будет {p}% от {n}?" if ru_q else f"What is {p}% of {n}?"
        ans = (
            f"Чтобы найти {p}% от числа, умножим его на {p} и разделим на 100:\n"
            f"{n} × {p} / 100 = {res}.\n\n**Ответ:** {res}."
            if ru_a
            else f"To find {p}% of a number, multiply by {p} and divide by 100:\n"
            f"{n} × {p} / 100 = {res}.\n\n**Answer:** {res}."
        )
    elif kind == 2:
        a, b = r.randint(20, 300), r.randint(10, 200)
        c = r.randint(5, a + b - 1)
        q = (
            f"В магазине было {a} кг яблок. Утром привезли ещё {b} кг, а за день продали {c} кг. "
            "Сколько килограммов яблок осталось?"
            if ru_q
            else f"A shop had {a} kg of apples. In the morning {b} kg more arrived, and {c} kg "
            "were sold during the day. How many kilograms are left?"
        )
        ans = (
            f"1) {a} + {b} = {a + b} кг — стало после поставки.\n"
            f"2) {a + b} − {c} = {a + b - c} кг — осталось.\n\n**Ответ:** {a + b - c} кг."
            if ru_a
            else f"1) {a} + {b} = {a + b} kg after the delivery.\n"
            f"2) {a + b} - {c} = {a + b - c} kg left.\n\n**Answer:** {a + b - c} kg."
        )
    elif kind == 3:
        a, n, b, c = r.randint(2, 9), r.randint(2, 5), r.randint(1, 12), r.randint(1, 20)
        power = "x" if n == 2 else f"x^{n - 1}"
        q = (
            f"Найди производную функции f(x) = {a}x^{n} + {b}x + {c}."
            if ru_q
            else f"Find the derivative of f(x) = {a}x^{n} + {b}x + {c}."
        )
        ans = (
            "Производная суммы равна сумме производных; (x^n)' = n·x^(n−1), производная "
            f"константы равна нулю.\n\nf'(x) = {a * n}{power} + {b}.\n\n"
            f"**Ответ:** f'(x) = {a * n}{power} + {b}."
            if ru_a
            else "The derivative of a sum is the sum of derivatives; (x^n)' = n·x^(n-1), and "
            f"a constant's derivative is zero.\n\nf'(x) = {a * n}{power} + {b}.\n\n"
            f"**Answer:** f'(x) = {a * n}{power} + {b}."
        )
    else:
        a, b = r.randint(2, 40), r.randint(2, 40)
        q = (
            f"Найди площадь и периметр прямоугольника со сторонами {a} см и {b} см."
            if ru_q
            else f"Find the area and perimeter of a {a} cm by {b} cm rectangle."
        )
        ans = (
            f"Площадь: S = {a} · {b} = {a * b} см².\nПериметр: P = 2 · ({a} + {b}) = "
            f"{2 * (a + b)} см.\n\n**Ответ:** {a * b} см², {2 * (a + b)} см."
            if ru_a
            else f"Area: S = {a} · {b} = {a * b} cm².\nPerimeter: P = 2 · ({a} + {b}) = "
            f"{2 * (a + b)} cm.\n\n**Answer:** {a * b} cm², {2 * (a + b)} cm."
        )
    return q, ans


_RIDDLES = {
    "ru": (
        ("Что тяжелее: килограмм ваты или килограмм железа?",
         "Они весят одинаково — по килограмму. Разница только в объёме: вата занимает гораздо больше места."),
        ("Если все розы — цветы, а некоторые цветы быстро вянут, следует ли, что некоторые розы быстро вянут?",
         "Нет, не следует. Известно лишь, что быстро вянут некоторые цветы, но это могут быть вовсе не розы. Это классическая логическая ошибка."),
        ("У отца Мэри пять дочерей: Чача, Чече, Чичи, Чочо. Как зовут пятую?",
         "Пятую дочь зовут Мэри — это сказано в самом условии."),
        ("Сколько раз можно вычесть 10 из 100?",
         "Один раз: после первого вычитания это уже не 100, а 90."),
    ),
    "en": (
        ("Which is heavier: a kilogram of feathers or a kilogram of steel?",
         "They weigh the same, one kilogram each; feathers just take up more space."),
        ("If all roses are flowers and some flowers fade quickly, do some roses fade quickly?",
         "No. We only know that some flowers fade quickly; they need not be roses."),
    ),
}  # fmt: skip


def _reasoning_task(r: random.Random, lang: str) -> tuple[str, str]:
    ru = lang == "ru"
    kind = r.randrange(3)
    if kind == 0:
        h, t, v = r.randint(5, 14), r.randint(2, 9), r.randrange(40, 130, 5)
        q = (
            f"Поезд выехал в {h}:00 и шёл {t} ч со скоростью {v} км/ч. "
            + r.choice(
                (
                    "Сколько он проехал и когда прибыл?",
                    "Найди путь и время прибытия.",
                    "Какое расстояние он прошёл?",
                )
            )
            if ru
            else f"A train left at {h}:00 and travelled for {t} hours at {v} km/h. "
            "How far did it go and when did it arrive?"
        )
        a = (
            f"Рассуждаем по шагам.\n1) Расстояние = скорость × время = {v} × {t} = {v * t} км.\n"
            f"2) Время прибытия: {h}:00 + {t} ч = {(h + t) % 24}:00.\n\n"
            f"**Ответ:** {v * t} км, прибытие в {(h + t) % 24}:00."
            if ru
            else f"Step by step.\n1) Distance = speed × time = {v} × {t} = {v * t} km.\n"
            f"2) Arrival: {h}:00 + {t} h = {(h + t) % 24}:00.\n\n"
            f"**Answer:** {v * t} km, arriving at {(h + t) % 24}:00."
        )
    elif kind == 1:
        m, d, k = r.randint(5, 20), r.randint(2, 4), r.randint(5, 15)
        q = (
            f"{r.choice(('Маше', 'Кате', 'Лене', 'Оле', 'Ане'))} {m} лет. Брат старше на {d} года. "
            f"Сколько ему будет через {k} лет?"
            if ru
            else f"Masha is {m} and her brother is {d} years older. "
            f"How old will he be in {k} years?"
        )
        a = (
            f"Сейчас брату {m} + {d} = {m + d}. "
            f"Через {k} лет ему будет {m + d} + {k} = {m + d + k}.\n\n"
            f"**Ответ:** {m + d + k}."
            if ru
            else f"He is {m} + {d} = {m + d} now, so in {k} years he will be {m + d + k}.\n\n"
            f"**Answer:** {m + d + k}."
        )
    else:
        q, a = r.choice(_RIDDLES["ru" if ru else "en"])
    return q, a


def _extract_task(r: random.Random, lu: str, lb: str) -> tuple[str, str]:
    """A short biography with a name, two years, a city and a company, and the extraction."""
    i = r.randrange(len(_EXTRACT_PEOPLE))
    female = i % 2 == 0  # the name bank alternates female and male names
    city_prep, city_en = r.choice(_EXTRACT_CITIES)
    j = r.randrange(len(_EXTRACT_ORGS))
    y1 = r.randint(1960, 1995)
    y2 = y1 + r.randint(18, 25)
    if lu == "ru":
        born, grad, came = (
            ("родилась", "окончила", "пришла") if female else ("родился", "окончил", "пришёл")
        )
        text = (
            f"{_EXTRACT_PEOPLE[i]} {born} в {city_prep} в {y1} году. В {y2} году {grad} "
            f"университет. Потом {came} в {_EXTRACT_ORGS[j]}."
        )
        q = r.choice(
            (
                "Выдели имена, даты, города и организации:",
                "Найди в тексте все сущности.",
                "Извлеки из текста даты и имена.",
                "Какие имена и города тут есть?",
            )
        )
        q = f"{q}\n\n{text}"
    else:
        pron = "she" if female else "he"
        text = (
            f"{_EXTRACT_PEOPLE_EN[i]} was born in {city_en} in {y1}. In {y2} {pron} graduated "
            f"and then joined {_EXTRACT_ORGS_EN[j]}."
        )
        q = r.choice(
            (
                "Extract names, dates, cities and organisations:",
                "Find all entities here.",
                "List the names and dates in this text.",
            )
        )
        q = f"{q}\n\n{text}"
    if lb == "ru":
        a = (
            f"- Имена: {_EXTRACT_PEOPLE[i]}\n- Даты: {y1}, {y2}\n"
            f"- Города: {_CITY_NOMINATIVE[city_prep]}\n- Организации: {_EXTRACT_ORGS[j]}"
        )
    else:
        a = (
            f"- Names: {_EXTRACT_PEOPLE_EN[i]}\n- Dates: {y1}, {y2}\n- Cities: {city_en}\n"
            f"- Organisations: {_EXTRACT_ORGS_EN[j]}"
        )
    return q, a


_CITY_NOMINATIVE = {"Казани": "Казань", "Новосибирске": "Новосибирск", "Томске": "Томск",
                    "Самаре": "Самара", "Екатеринбурге": "Екатеринбург", "Перми": "Пермь"}  # fmt: skip


def _decorate(
    r: random.Random, prompt: str, lang: str, suffixes: Sequence[str], p: float = 0.45
) -> str:
    """Add an optional context sentence before and a constraint after a prompt."""
    if r.random() < p:
        prompt = f"{r.choice(_PROMPT_PREFIXES[lang])} {prompt}"
    if r.random() < p:
        prompt = f"{prompt} {r.choice(suffixes)}"
    return prompt


def _task(r: random.Random, name: str, lu: str, lb: str) -> tuple[str, str]:
    """(question, answer) for the task topics: generated problems and paired exchanges."""
    if name == "math":
        return _math_task(r, lu, lb)
    if name == "reasoning":
        return _reasoning_task(r, lu)
    if name == "extract":
        return _extract_task(r, lu, lb)
    if name == "translation":
        ru, en = r.choice(_TRANSLATION_PAIRS)
        if lu == "ru":
            q = r.choice(
                (
                    "Переведи на английский: «{t}»",
                    "Как сказать по-английски: «{t}»?",
                    "Translate to English, please: {t}",
                )
            ).format(t=ru)
            return q, (f"Перевод: «{en}»" if lb == "ru" else f'Translation: "{en}"')
        q = r.choice(('Translate into Russian: "{t}"', "How do you say this in Russian: {t}"))
        return q.format(t=en), (f"In Russian: «{ru}»" if lb == "en" else f"По-русски: «{ru}»")
    if name == "languages":
        return r.choice(_LANGUAGE_QA[lu])
    if name == "chit_chat":
        q, a = r.choice(_CHIT_CHAT[lu])
        greeting = r.choice(_CHIT_GREETINGS[lu])
        q = f"{greeting} {q}" if greeting else q
        tail = r.choice(_CHIT_TAILS)
        return (q.rstrip(".!?") + tail if tail else q), a
    if name == "inappropriate":
        return r.choice(_INAPPROPRIATE[lu])
    raise ValueError(f"{name!r} is not a task topic")


def _first_turn(
    r: random.Random, name: str, topic: _Topic, lu: str, lb: str
) -> tuple[str, str, str, str]:
    """(user prompt, answer head, subject in English, subject in the bot's language)."""
    if topic.style == "task":
        q, head = _task(r, name, lu, lb)
        if name != "chit_chat":
            q = _decorate(r, q, lu, _TASK_SUFFIXES[lu], p=0.65)
        return q, head, "", ""
    if name == "coding" and r.random() < 0.6:
        task_ru, task_en, code = r.choice(_CODE_TASKS)
        q = (
            r.choice(
                (
                    "Напиши функцию на Python, которая {t}.",
                    "Нужна функция на Python. Она {t}.",
                    "Как на Python сделать функцию, которая {t}?",
                )
            ).format(t=task_ru)
            if lu == "ru"
            else r.choice(
                ("Write a Python function that {t}.", "How do I write a Python function that {t}?")
            ).format(t=task_en)
        )
        head = (
            f"Вот простое решение:\n\n```python\n{code}\n```\n\nФункция проходит по данным "
            "один раз и возвращает результат."
            if lb == "ru"
            else f"Here is a simple solution:\n\n```python\n{code}\n```\n\nThe function walks "
            "through the input once and returns the result."
        )
        return _decorate(r, q, lu, _PROMPT_SUFFIXES[lu], p=0.6), head, task_en, ""
    # Template prompts about a subject.
    if lu == "uk":
        subject, subject_en = r.choice(topic.subjects_uk)
        q = _fill(r.choice(_UK_WRITING_PROMPTS if name == "writing" else _UK_PROMPTS), subject)
        head = ""
        if name == "cooking":
            head = "Вам знадобиться:\n- " + "\n- ".join(r.sample(_INGREDIENTS["uk"], 4))
        return _decorate(r, q, lu, _PROMPT_SUFFIXES[lu], p=0.6), head, subject_en, subject
    s_ru, s_en = r.choice(topic.subjects)
    templates = topic.prompts[lu]
    if name not in ("cooking", "writing", "entertainment") and r.random() < 0.5:
        templates = _GENERIC_PROMPTS[lu]  # their subjects are not in the nominative
    q = _fill(r.choice(templates), s_ru if lu == "ru" else s_en)
    head = ""
    if name == "cooking":
        lead = "Вам понадобится:" if lb == "ru" else "You will need:"
        head = f"{lead}\n- " + "\n- ".join(r.sample(_INGREDIENTS[lb], r.randint(3, 6)))
    return (
        _decorate(r, q, lu, _PROMPT_SUFFIXES[lu], p=0.6),
        head,
        s_en,
        s_ru if lb == "ru" else s_en,
    )


def _followup(
    r: random.Random, name: str, topic: _Topic, lu: str, lb: str, subject: str, chars: int
) -> tuple[str, str]:
    """A later (user, bot) exchange: a new task for task topics, else a follow-up question."""
    if name == "inappropriate":
        pushes, answers = _PRESSURE.get(lu, _PRESSURE["en"])
        return r.choice(pushes), r.choice(_PRESSURE.get(lb, _PRESSURE["en"])[1])
    if topic.style == "task":
        q, a = _task(r, name, lu, lb)
        if name != "chit_chat":
            prefix = r.choice(_NEXT_TASK[lu])
            q = prefix + (q[:1].lower() + q[1:] if prefix else q)
        return q, _compose(r, lb, topic, "", chars, a, openers=("",))
    q = r.choice(_FOLLOWUPS[lu])
    if "{s2}" in q:
        others = (
            [p[0] for p in topic.subjects_uk]
            if lu == "uk"
            else [p[0] if lu == "ru" else p[1] for p in topic.subjects]
        )
        q = q.replace("{s2}", r.choice(others)) if others else _FOLLOWUPS[lu][0]
    return q, _compose(r, lb, topic, subject, chars, openers=_FOLLOWUP_OPENERS[lb])


def _saiga_messages(
    r: random.Random,
    name: str,
    lu: str,
    lb: str,
    turns: int,
    system: bool,
    flag: str,
    flag_turn: int,
    reply_chars: np.ndarray,
) -> tuple[list[tuple[str, str]], str]:
    """One dialogue as (content, role) pairs, and its subject in English (for explanations).

    `flag` is "" or one of "selfref" / "refusal" / "hidden": what the bot does at bot turn
    `flag_turn` instead of (or before) answering.
    """
    topic = _TOPICS[name]
    messages: list[tuple[str, str]] = []
    subject_en = ""
    if name == "roleplay":
        persona_system, user_lines, bot_lines = r.choice(_PERSONAS[lu])
        messages.append((persona_system, "system"))
        more = (
            (
                "А что было дальше?",
                "Расскажи подробнее!",
                "Ха-ха, а ещё?",
                "И что ты сделал?",
                "Серьёзно?",
                "Не верю!",
                "А потом?",
            )
            if lu == "ru"
            else ("And then what?", "Tell me more!", "Ha, what else?", "Really?")
        )
        for t in range(turns):
            if t == 0:
                line = r.choice(user_lines if r.random() < 0.7 else _RP_OPENERS[lu])
            else:
                line = r.choice(user_lines) if r.random() < 0.4 else r.choice(more)
            if t == 0 and r.random() < 0.6:
                line = f"{r.choice(_RP_GREETINGS[lu])} {line}"
            if r.random() < 0.4:
                line = f"{r.choice(_USER_DIRECTIONS[lu])} {line}"
            messages.append((line, "user"))
            n = max(1, min(len(bot_lines) - 1, int(reply_chars[t]) // 80))
            reply = " ".join(_take(r, bot_lines, n))
            if r.random() < 0.5:
                reply = f"{r.choice(_STAGE_DIRECTIONS[lu])} {reply}"
            messages.append((reply, "bot"))
    else:
        if system:
            messages.append((r.choice(_ASSISTANT_SYSTEMS[lb]), "system"))
        prompt, head, subject_en, subject_bot = _first_turn(r, name, topic, lu, lb)
        messages.append((prompt, "user"))
        messages.append((_compose(r, lb, topic, subject_bot, int(reply_chars[0]), head), "bot"))
        for t in range(1, turns):
            q, a = _followup(r, name, topic, lu, lb, subject_bot, int(reply_chars[t]))
            messages.append((q, "user"))
            messages.append((a, "bot"))
    if flag:
        idx = [i for i, (_, role) in enumerate(messages) if role == "bot"][flag_turn]
        content = messages[idx][0]
        if flag == "selfref":
            content = r.choice(_SELF_REFERENCES[lb]) + " " + content
        elif flag == "refusal":
            content = r.choice(_REFUSALS[lb])
        else:
            content = r.choice(_HIDDEN_REFUSALS[lb])
        messages[idx] = (content, "bot")
    return messages, subject_en


def _categorical(rng: np.random.Generator, probs: dict, size: int) -> np.ndarray:
    """`size` draws of the keys of `probs` (weights need not sum to 1), as an object array."""
    keys = list(probs)
    p = np.array([probs[k] for k in keys], dtype=float)
    return np.array(keys, dtype=object)[rng.choice(len(keys), size=size, p=p / p.sum())]


def _near_duplicate(r: random.Random, prompt: str, lang: str) -> str:
    """A light edit of `prompt`, as users re-asking the same thing produce."""
    edit = r.randrange(4)
    if edit == 0:
        return prompt.rstrip(".?!")
    if edit == 1:
        please = {"ru": "Пожалуйста, ", "en": "Please, ", "uk": "Будь ласка, "}[lang]
        return please + prompt[:1].lower() + prompt[1:]
    if edit == 2:
        return prompt + {"ru": " Спасибо!", "en": " Thanks!", "uk": " Дякую!"}[lang]
    return prompt.replace(", ", " , ", 1) if ", " in prompt else prompt + " "


def generate_saiga(rows: int, seed: int) -> pl.DataFrame:
    """`rows` synthetic chat dialogues in SAIGA_FULL_SCHEMA (exact real schema and values).

    Recipe (each knob is a module constant next to the fact it matches):
    - language: Russian 87%, English 7.5%, Mixed 4.5% (user and bot in different languages),
      Ukrainian 1%; text is written in that language (Cyrillic for Russian/Ukrainian).
    - sonnet_topic: the 24 labels with realistic weights (writing, coding, facts, roleplay
      most common); 0.2% off-list labels. Prompts and answers are on the topic: templated
      questions about topic subjects, and generated tasks with correct worked answers for
      math, reasoning, extraction, translation, code.
    - turns: 60% single-turn, tail to 8 (roleplay longer); messages alternate user/bot,
      a `system` message first in roleplay rows (persona) and 12% of the others (assistant
      prompt); roles are `system`/`user`/`bot`; the last message is always a non-empty bot
      reply and `turns` counts bot messages.
    - malformed rows (0.14%): the first user message is missing, so a bot reply comes first.
    - bot reply length: lognormal in characters (median 800, long tail to 20k) times topic
      and complexity factors, so token-length filters remove a visible but small share.
    - is_bad_by_regex: computed from the text with `BAD_PHRASES` (the real rule); flagged
      text appears where a real assistant would produce it: "as an AI" self-references
      (more in wildchat/sharegpt logs), refusals (most inappropriate requests), plus 1%
      refusals the phrase list misses.
    - opus_score: round(N(8.95 + topic/complexity/language/source shifts, 1.15)) in 1..10;
      self-references ~5, refusals ~2; Russian rows with score >= 8 are ~2/3 of all rows.
    - explanations: English free text consistent with the label they explain.
    - ~1% of first user prompts repeat another row's (half exactly, half with a small edit);
      short templated prompts also repeat by chance, as short prompts do in real data.
    """
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    rng, r = _rngs(seed)
    language = _categorical(rng, _SAIGA_LANGUAGES, rows)
    topic = np.empty(rows, dtype=object)
    for lang in _SAIGA_LANGUAGES:
        mask = language == lang
        names = {"Ukrainian": _UK_TOPICS, "Mixed": _MIXED_TOPICS}.get(lang, tuple(_TOPICS))
        topic[mask] = _categorical(rng, {n: _TOPICS[n].weight for n in names}, int(mask.sum()))
    roleplay = topic == "roleplay"
    turns = _categorical(rng, _TURNS, rows).astype(np.int64)
    turns[roleplay] = _categorical(rng, _ROLEPLAY_TURNS, int(roleplay.sum())).astype(np.int64)
    malformed = rng.random(rows) < _MALFORMED_SHARE
    turns[malformed] = np.maximum(turns[malformed], 2)
    system = roleplay | (rng.random(rows) < _SYSTEM_SHARE)
    source = np.empty(rows, dtype=object)
    for lang, probs in _SOURCES.items():
        mask = (language == lang) & ~roleplay
        source[mask] = _categorical(rng, probs, int(mask.sum()))
    source[roleplay] = _categorical(rng, _ROLEPLAY_SOURCES, int(roleplay.sum()))
    complexity = np.empty(rows, dtype=object)
    for name, t in _TOPICS.items():
        mask = topic == name
        complexity[mask] = _categorical(
            rng, dict(zip(("easy", "medium", "hard"), t.complexity, strict=True)), int(mask.sum())
        )
    # Flags: by source; chit-chat invites "as an AI" remarks; most harmful requests are refused.
    flag_p = np.array([_FLAG_SHARE[s] for s in source]) * np.where(topic == "chit_chat", 2.5, 1.0)
    u = rng.random(rows)
    flag = np.where(
        u < flag_p, _categorical(rng, dict(zip(_FLAG_MODES, _FLAG_MODE_P, strict=True)), rows), ""
    )
    flag = np.where(~(u < flag_p) & (rng.random(rows) < _HIDDEN_REFUSAL_SHARE), "hidden", flag)
    inappropriate = topic == "inappropriate"
    flag[inappropriate] = np.where(
        rng.random(int(inappropriate.sum())) < _INAPPROPRIATE_REFUSAL, "refusal", ""
    )
    flag_turn = (rng.random(rows) * turns).astype(np.int64)
    # Reply lengths for up to 8 bot turns; follow-up replies are shorter.
    length_factor = np.array([_TOPICS[t].length for t in topic]) * np.select(
        [complexity == "easy", complexity == "hard"], [0.7, 1.4], 1.0
    )
    reply_chars = np.exp(rng.normal(_REPLY_LOG_MEDIAN, _REPLY_LOG_SD, (rows, 8)))
    reply_chars *= length_factor[:, None] * np.r_[1.0, np.full(7, 0.7)][None, :]
    reply_chars = np.clip(reply_chars, 20, _REPLY_MAX_CHARS)
    mixed_user_ru = rng.random(rows) < 0.5
    score_z = rng.normal(size=rows)
    off_list = rng.random(rows) < _OFF_LIST_SHARE

    all_messages: list[list[tuple[str, str]]] = []
    subjects_en: list[str] = []
    langs_user: list[str] = []
    for i in range(rows):
        lang = language[i]
        if lang == "Mixed":
            lu, lb = ("ru", "en") if mixed_user_ru[i] else ("en", "ru")
        else:
            lu = lb = _LANG_CODE[lang]
        msgs, subj = _saiga_messages(
            r,
            topic[i],
            lu,
            lb,
            int(turns[i]),
            bool(system[i]),
            flag[i],
            int(flag_turn[i]),
            reply_chars[i],
        )
        if malformed[i]:
            first_user = next(k for k, (_, role) in enumerate(msgs) if role == "user")
            del msgs[first_user]
        all_messages.append(msgs)
        subjects_en.append(subj)
        langs_user.append(lu)

    _duplicate_prompts(rng, r, all_messages, topic, langs_user)
    is_bad = np.array(
        [
            any(role == "bot" and contains_bad_phrase(c) for c, role in msgs)
            for msgs in all_messages
        ],
        dtype=bool,
    )
    score = _opus_scores(
        topic,
        complexity,
        language,
        source,
        flag,
        flag_turn,
        turns,
        malformed,
        all_messages,
        score_z,
    )

    labels = np.where(
        off_list, _categorical(rng, dict.fromkeys(_OFF_LIST_TOPICS, 1.0), rows), topic
    )
    topic_expl = [
        _OFF_LIST_EXPLANATION.format(topic=labels[i])
        if off_list[i]
        else r.choice(_TOPIC_EXPLANATIONS).format(
            desc=_TOPICS[topic[i]].desc.replace("{s}", subjects_en[i] or "it"), topic=topic[i]
        )
        for i in range(rows)
    ]
    complexity_expl = [r.choice(_COMPLEXITY_EXPLANATIONS[c]) for c in complexity]
    score_expl = [_score_explanation(r, int(s)) for s in score]
    return pl.DataFrame(
        {
            "messages": _messages_column(all_messages),
            "source": source.tolist(),
            "opus_score": score,
            "language": language.tolist(),
            "turns": turns,
            "sonnet_topic": labels.tolist(),
            "sonnet_topic_explanation": topic_expl,
            "sonnet_complexity": complexity.tolist(),
            "sonnet_complexity_explanation": complexity_expl,
            "is_bad_by_regex": is_bad,
            "score_explanation": score_expl,
        },
        schema=SAIGA_FULL_SCHEMA,
    )


def _duplicate_prompts(
    rng: np.random.Generator,
    r: random.Random,
    all_messages: list[list[tuple[str, str]]],
    topic: np.ndarray,
    langs_user: list[str],
) -> None:
    """Make ~1% of rows repeat an earlier row's first prompt (same topic and language)."""
    rows = len(all_messages)
    n_dup = int(round(rows * _DUP_PROMPT_SHARE))
    if n_dup == 0:
        return
    for i in np.sort(rng.choice(np.arange(1, rows), size=min(n_dup, rows - 1), replace=False)):
        first_i = next((k for k, (_, role) in enumerate(all_messages[i]) if role == "user"), None)
        for _ in range(20):  # a few tries to find an earlier row of the same kind
            j = int(rng.integers(0, i))
            if topic[j] == topic[i] and langs_user[j] == langs_user[i] and topic[i] != "roleplay":
                break
        else:
            continue
        first_j = next((k for k, (_, role) in enumerate(all_messages[j]) if role == "user"), None)
        if first_i is None or first_j is None:
            continue
        prompt = all_messages[j][first_j][0]
        if r.random() < 0.5:
            prompt = _near_duplicate(r, prompt, langs_user[i])
        all_messages[i][first_i] = (prompt, "user")


def _opus_scores(
    topic: np.ndarray,
    complexity: np.ndarray,
    language: np.ndarray,
    source: np.ndarray,
    flag: np.ndarray,
    flag_turn: np.ndarray,
    turns: np.ndarray,
    malformed: np.ndarray,
    all_messages: list[list[tuple[str, str]]],
    z: np.ndarray,
) -> np.ndarray:
    """Judge scores 1..10: a latent quality from row attributes, flagged rows scored lower."""
    mean = (
        _SCORE_BASE
        + np.array([_TOPICS[t].score_shift for t in topic])
        + np.array([_SCORE_SHIFT_COMPLEXITY[c] for c in complexity])
        + np.array([_SCORE_SHIFT_LANGUAGE[x] for x in language])
        + np.array([_SCORE_SHIFT_SOURCE[s] for s in source])
        - 0.8 * malformed
    )
    # Very short answers outside small talk are usually lazy.
    last_len = np.array([len(m[-1][0]) for m in all_messages])
    mean -= np.where((last_len < 60) & (topic != "chit_chat") & (topic != "translation"), 0.8, 0.0)
    latent = mean + _SCORE_SD * z
    last_turn = flag_turn == turns - 1
    latent = np.where(flag == "selfref", 5.3 + 1.2 * z, latent)
    latent = np.where((flag == "refusal") & last_turn, 2.0 + 0.9 * z, latent)
    latent = np.where((flag == "refusal") & ~last_turn, 4.0 + 1.2 * z, latent)
    latent = np.where(flag == "hidden", 3.0 + 1.0 * z, latent)
    lo, hi = OPUS_SCORE_RANGE
    return np.clip(np.rint(latent), lo, hi).astype(np.int64)


def _score_explanation(r: random.Random, score: int) -> str:
    for threshold, texts in _SCORE_EXPLANATIONS:
        if score >= threshold:
            return r.choice(texts)
    return r.choice(_SCORE_EXPLANATIONS[-1][1])


def _messages_column(all_messages: list[list[tuple[str, str]]]) -> pl.Series:
    """The list[struct{content, role}] column, built through arrow (fast for 10^5 structs)."""
    offsets = np.zeros(len(all_messages) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(m) for m in all_messages])
    flat = [pair for msgs in all_messages for pair in msgs]
    structs = pa.StructArray.from_arrays(
        [
            pa.array([c for c, _ in flat], pa.large_string()),
            pa.array([role for _, role in flat], pa.large_string()),
        ],
        names=["content", "role"],
    )
    arr = pa.LargeListArray.from_arrays(pa.array(offsets.astype(np.int64)), structs)
    return pl.Series("messages", arr).cast(SAIGA_FULL_SCHEMA["messages"])
