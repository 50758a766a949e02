"""The project's own English sentence generator: a small grammar over a vocabulary written here.

Offline machines cannot download text corpora, and a template vocabulary of a few dozen words makes WER meaningless
(a model memorises it). This grammar has ~1,000 distinct word forms (nouns with plurals, verbs with their
inflections, adjectives, adverbs, places, names, spelled-out numbers, days and months) and a dozen sentence shapes
(statements, questions, commands), so a few thousand sentences rarely repeat and test sentences are new to a model.

    gen = SentenceGenerator(seed=0)
    gen.sentence()                       # 'did the quiet baker sell forty two green bottles in denver'
    unique_sentences(100, seed=0)        # 100 distinct sentences, the same for the same seed

Output is lowercase, words separated by single spaces, no punctuation except apostrophes ("don't", "maria's"),
4-12 words long.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from espnet_peft.utils.number_words import cardinal

MIN_WORDS = 4
MAX_WORDS = 12


def _words(block: str) -> tuple[str, ...]:
    """Whitespace-separated entries; ``base:irregular`` carries an irregular plural or past tense."""
    return tuple(block.split())


# ---------------------------------------------------------------- vocabulary (written for this project)

# Things one can handle; "knife:knives" gives an irregular plural.
OBJECTS = _words("""
    book letter cup bottle box key lamp chair table window door basket bag coat hat shoe sock glove scarf
    umbrella ticket map camera phone radio clock watch candle blanket pillow mirror picture painting poster
    envelope notebook pencil pen ruler bucket ladder hammer rope wheel bicycle wagon boat kite ball drum guitar
    violin piano trumpet shovel brush comb towel plate bowl spoon fork knife:knives kettle jar jug bench fence
    gate roof wall floor carpet curtain shelf:shelves drawer wallet coin necklace ring bracelet helmet jacket
    sweater shirt skirt belt button suitcase backpack tent flag ribbon parcel package newspaper magazine
    calendar postcard puzzle stamp battery engine tractor truck bus train wire cable screen keyboard printer
    statue vase feather leaf:leaves stone shell branch log barrel crate
""")
FOODS = _words("""
    apple banana orange lemon peach pear plum cherry grape melon potato:potatoes tomato:tomatoes carrot onion
    pepper cabbage lettuce cucumber pumpkin bean pea mushroom sausage pancake cookie biscuit muffin cake pie
    pizza noodle dumpling sandwich burger omelette salad pickle cracker pretzel waffle doughnut cupcake
    strawberry blueberry raspberry walnut peanut almond turnip radish
""")
ANIMALS = _words("""
    dog cat horse cow pig goat sheep:sheep rabbit mouse:mice duck goose:geese chicken turkey donkey fox wolf:wolves
    bear deer:deer lion tiger monkey zebra giraffe elephant camel kangaroo penguin parrot owl eagle swan frog
    turtle snake squirrel hedgehog beaver otter dolphin whale seal puppy kitten pony lamb
""")
PEOPLE = _words("""
    teacher doctor nurse farmer baker driver pilot sailor soldier painter writer singer dancer player student
    neighbor manager lawyer cook waiter gardener builder plumber carpenter mechanic fisherman:fishermen
    policeman:policemen firefighter scientist engineer librarian artist actor musician reporter judge
    captain clerk tailor barber cousin uncle aunt grandmother grandfather sister brother friend stranger
    visitor child:children woman:women man:men boy girl baby
""")
# Common places, used with a preposition ("near the station", "to the market").
PLACES = _words("""
    park library station kitchen garden market school office hospital museum theater bakery hotel airport
    harbor beach river lake forest mountain valley village city bridge tower castle church farm barn field
    island desert cave street corner square playground stadium factory restaurant cafe shop store bank
    pharmacy cinema gallery zoo garage cellar attic hallway classroom laboratory cottage cabin palace
""")
CITIES = _words("""
    london paris boston chicago denver dallas seattle portland phoenix atlanta miami houston austin detroit
    toronto vancouver montreal dublin glasgow edinburgh madrid rome berlin vienna prague warsaw oslo stockholm
    helsinki lisbon athens cairo nairobi tokyo sydney melbourne auckland texas ohio oregon nevada kansas
    alaska florida canada mexico brazil spain italy france norway sweden egypt kenya india china japan
""")
NAMES = _words("""
    maria john james mary robert linda michael sarah david emma daniel olivia thomas sophia william grace henry
    alice george lucy peter anna paul laura mark helen steven rachel andrew kate joseph nina charles julia
    edward clara frank rosa samuel hannah simon ruth oscar ella victor irene arthur nora felix diana martin
    sophie hugo maya leo iris owen zoe ben lily adam chloe noah amy ethan jane lucas eva
""")
ADJECTIVES = _words("""
    old new young big small tall short long wide narrow heavy light dark bright quiet loud soft hard warm cold
    hot cool wet dry clean dirty empty full cheap expensive rich poor happy sad angry calm brave shy proud kind
    gentle clever busy lazy tired hungry thirsty sleepy lucky famous strange friendly lonely honest polite
    careful curious nervous serious funny silly simple plain fancy modern ancient broken fresh rotten sweet
    sour bitter salty spicy smooth rough sharp thin thick round square flat deep shallow strong weak fast slow
    early late red blue green yellow orange purple pink brown black white gray golden silver wooden
    metal cotton woolen striped spotted tiny huge enormous little pretty ugly lovely beautiful wonderful
    terrible awful pleasant noisy peaceful crowded sunny cloudy rainy windy snowy foggy icy frozen dusty muddy
    shiny rusty wild tame clumsy graceful
""")
# Degree words before an adjective ("very quiet"); manner adverbs at the end of a clause.
DEGREES = _words("very quite rather really extremely fairly too so pretty incredibly")
ADVERBS = _words("""
    quickly slowly carefully quietly loudly gently happily sadly angrily calmly bravely proudly kindly
    politely nervously patiently eagerly easily badly neatly safely softly firmly warmly brightly suddenly
    finally rarely often always never sometimes usually seldom already again together alone early late
    outside inside upstairs downstairs abroad nearby twice
""")
NUMBER_RANGE = range(2, 100)  # the counts the grammar says ("forty two dogs"): words from number_words
DAYS = _words("monday tuesday wednesday thursday friday saturday sunday")
MONTHS = _words("january february march april may june july august september october november december")
PARTS_OF_DAY = _words("morning afternoon evening night weekend week month year")
AGO_UNITS = _words("day week month year")

# Verbs: "base" for a regular verb, "base:past" for an irregular one.
# Verbs whose object is a thing one can handle.
THING_VERBS = _words("""
    buy:bought sell:sold find:found lose:lost carry open close clean fix break:broke paint wash move hide:hid
    drop lift pack wrap borrow lend:lent bring:brought take:took send:sent keep:kept hold:held throw:threw
    catch:caught push pull fold fill empty check count choose:chose order deliver return polish repair collect
    share sort measure weigh mark sign print draw:drew build:built cut:cut steal:stole forget:forgot want need
    like love hate notice describe remember touch drag grab shake:shook hang:hung dust replace
""")
# Verbs whose object is food.
FOOD_VERBS = _words("""
    eat:ate cook bake taste boil fry slice chop peel serve buy:bought sell:sold share order want like love
    grow:grew pick wash smell
""")
# Verbs whose object is a person or an animal.
SOCIAL_VERBS = _words("""
    meet:met visit call help thank follow invite teach:taught watch greet hug feed:fed find:found see:saw
    hear:heard ask tell:told warn forgive:forgave remember miss chase rescue introduce pay:paid join wake:woke
    photograph interview
""")
INTRANSITIVE_VERBS = _words("""
    sleep:slept laugh smile wait arrive travel swim:swam run:ran dance sing:sang cry shout whisper listen rest
    work play study jump climb fall:fell sit:sat stand:stood relax complain apologize disappear stay hurry
""")
MOTION_VERBS = _words("walk drive:drove go:went fly:flew run:ran travel return hurry ride:rode sail move")
MODALS = _words("can could should will would must might")

# Words the templates spell out themselves.
FUNCTION_WORDS = _words("""
    the a an my your his her our their this that these those some every
    i you he she we they am is are was were will did don't doesn't didn't can't won't
    i'm you're he's she's it's we're they're i'll you'll he'll she'll we'll they'll let's
    in on at near behind beside across before after to from with by outside inside
    and but who which why how where when there so still always never please many
    yesterday today tomorrow tonight last next ago o'clock noon midnight lunch dinner breakfast
""")


# ---------------------------------------------------------------- morphology


def _split_entry(entry: str) -> tuple[str, str | None]:
    base, _, irregular = entry.partition(":")
    return base, irregular or None


_VOWELS = "aeiou"
# One-syllable (or stressed-final) verbs whose last consonant doubles before -ed / -ing.
_DOUBLES = frozenset("""
    stop plan drop grab hug jog dig cut run swim sit get put shop wrap chop hit win begin forget knit skip clap
    drag rob tap trim admit prefer regret permit spin set let shut
""".split())


def plural(entry: str) -> str:
    base, irregular = _split_entry(entry)
    if irregular:
        return irregular
    if base.endswith(("s", "sh", "ch", "x", "z")):
        return base + "es"
    if base.endswith("y") and base[-2] not in _VOWELS:
        return base[:-1] + "ies"
    return base + "s"


def third_person(entry: str) -> str:
    base, _ = _split_entry(entry)
    if base == "have":
        return "has"
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        return base + "es"
    if base.endswith("y") and base[-2] not in _VOWELS:
        return base[:-1] + "ies"
    return base + "s"


def past(entry: str) -> str:
    base, irregular = _split_entry(entry)
    if irregular:
        return irregular
    if base.endswith("e"):
        return base + "d"
    if base.endswith("y") and base[-2] not in _VOWELS:
        return base[:-1] + "ied"
    if base in _DOUBLES:
        return base + base[-1] + "ed"
    return base + "ed"


def gerund(entry: str) -> str:
    base, _ = _split_entry(entry)
    if base.endswith("ie"):
        return base[:-2] + "ying"
    if base.endswith("e") and not base.endswith(("ee", "ye", "oe")):
        return base[:-1] + "ing"
    if base in _DOUBLES:
        return base + base[-1] + "ing"
    return base + "ing"


def base_form(entry: str) -> str:
    return _split_entry(entry)[0]


# "an" goes by sound, not spelling: "a uniform", "an hour".
_AN_EXCEPTIONS = frozenset({"hour", "honest", "heir"})
_A_EXCEPTIONS = frozenset({"one", "uniform", "university", "unit", "useful", "european"})


def article(word: str) -> str:
    if word in _AN_EXCEPTIONS:
        return "an"
    if word in _A_EXCEPTIONS:
        return "a"
    return "an" if word[0] in _VOWELS else "a"


def number_words(n: int) -> list[str]:
    """2..99 spelled out as separate words ("forty two": the speller's spaced style, one token per word)."""
    if n not in NUMBER_RANGE:
        raise ValueError(f"number_words covers 2..99, got {n}")
    return cardinal(n, style="spaced").split()


# ---------------------------------------------------------------- grammar


@dataclass(frozen=True)
class Phrase:
    """A noun phrase and what agreement it needs: ``person`` 1/2/3, ``plural``."""

    words: tuple[str, ...]
    plural: bool = False
    person: int = 3

    @property
    def third_singular(self) -> bool:
        return self.person == 3 and not self.plural


_PRONOUNS = (Phrase(("i",), False, 1), Phrase(("you",), False, 2), Phrase(("he",)), Phrase(("she",)),
             Phrase(("we",), True, 1), Phrase(("they",), True, 3))
_POSSESSIVES = _words("my your his her our their")


class SentenceGenerator:
    """Deterministic for a given seed: the same seed yields the same sequence of sentences."""

    def __init__(self, seed: int | str = 0, max_words: int = MAX_WORDS) -> None:
        if not MIN_WORDS <= max_words <= MAX_WORDS:
            raise ValueError(f"max_words must be in {MIN_WORDS}..{MAX_WORDS}, not {max_words}")
        self.rng = random.Random(seed)
        self.max_words = max_words
        self._templates: tuple[Callable[[], list[str]], ...] = (
            self._statement_past, self._statement_present, self._statement_future, self._statement_progressive,
            self._statement_intransitive, self._statement_copula, self._statement_there, self._statement_travel,
            self._statement_negative, self._statement_contracted, self._question_yes_no, self._question_wh,
            self._question_how_many,
            self._command, self._command_negative, self._suggestion, self._possessive,
        )

    # -- small pieces

    def _pick(self, words: Sequence[str]) -> str:
        return self.rng.choice(words)

    def _maybe(self, p: float) -> bool:
        return self.rng.random() < p

    def _noun(self, entries: Sequence[str], plural_p: float = 0.3) -> tuple[str, bool]:
        entry = self._pick(entries)
        is_plural = self._maybe(plural_p)
        return (plural(entry) if is_plural else base_form(entry)), is_plural

    def _determined(self, entries: Sequence[str], adjective_p: float = 0.5, plural_p: float = 0.3) -> Phrase:
        """``the old lamp``, ``my three brown dogs``, ``a quiet neighbor``, ``some cherries``."""
        noun, is_plural = self._noun(entries, plural_p)
        words = [self._pick(ADJECTIVES)] if self._maybe(adjective_p) else []
        words.append(noun)
        if is_plural and self._maybe(0.35):
            words[:0] = number_words(self.rng.randint(2, 99))
            determiner = self._pick(("the", "my", "our", "their", ""))  # "" = no determiner: "forty two dogs"
        elif is_plural:
            determiner = self._pick(("the", "these", "those", "some", "our", "their", "my", "her", "his", "your"))
        else:
            determiner = self._pick(("the", "the", "a", "this", "that", "my", "your", "his", "her", "our", "every"))
            if determiner == "a":
                determiner = article(words[0])
        return Phrase((determiner, *words) if determiner else tuple(words), is_plural)

    def _subject(self) -> Phrase:
        roll = self.rng.random()
        if roll < 0.25:
            return self._pick(_PRONOUNS)
        if roll < 0.5:
            return Phrase((self._pick(NAMES),))
        if roll < 0.6:
            return Phrase((self._pick(NAMES) + "'s", base_form(self._pick(PEOPLE))))
        return self._determined(PEOPLE + ANIMALS, adjective_p=0.4)

    def _object(self) -> tuple[Sequence[str], Phrase]:
        """A verb class and a matching object."""
        roll = self.rng.random()
        if roll < 0.5:
            return THING_VERBS, self._determined(OBJECTS)
        if roll < 0.75:
            return FOOD_VERBS, self._determined(FOODS, plural_p=0.45)
        if self._maybe(0.4):
            return SOCIAL_VERBS, Phrase((self._pick(NAMES),))
        return SOCIAL_VERBS, self._determined(PEOPLE + ANIMALS)

    def _place(self) -> list[str]:
        if self._maybe(0.3):
            return [self._pick(("in", "near", "from")), self._pick(CITIES)]
        preposition = self._pick(("in", "near", "behind", "beside", "at", "across", "outside", "inside", "by"))
        words = [self._pick(ADJECTIVES)] if self._maybe(0.3) else []
        return [preposition, "the", *words, self._pick(PLACES)]

    def _time(self, tense: str) -> list[str]:
        day_or_month = self._pick(DAYS + MONTHS)
        part = self._pick(PARTS_OF_DAY)
        options = {
            "past": (["yesterday"], ["last", day_or_month], ["last", part], ["on", self._pick(DAYS)],
                     ["in", self._pick(MONTHS)], ["this", "morning"],
                     [*number_words(self.rng.randint(2, 12)), plural(self._pick(AGO_UNITS)), "ago"]),
            "future": (["tomorrow"], ["tonight"], ["next", day_or_month], ["next", part], ["on", self._pick(DAYS)],
                       ["after", "lunch"], ["before", "dinner"],
                       ["at", *number_words(self.rng.randint(2, 12)), "o'clock"]),
            "present": (["every", part], ["every", self._pick(DAYS)], ["today"], ["before", "breakfast"],
                        ["after", "dinner"], ["at", "noon"], ["at", "midnight"]),
        }[tense]
        return list(self._pick(options))

    def _verb_present(self, entries: Sequence[str], subject: Phrase) -> str:
        entry = self._pick(entries)
        return third_person(entry) if subject.third_singular else base_form(entry)

    def _be(self, subject: Phrase, tense: str) -> str:
        if tense == "past":
            return "was" if subject.person != 2 and not subject.plural else "were"
        if subject.person == 1 and not subject.plural:
            return "am"
        return "is" if subject.third_singular else "are"

    def _tail(self, tense: str, place_p: float = 0.5, time_p: float = 0.4, adverb_p: float = 0.2) -> list[str]:
        words: list[str] = []
        if self._maybe(adverb_p):
            words.append(self._pick(ADVERBS))
        if self._maybe(place_p):
            words += self._place()
        if self._maybe(time_p):
            words += self._time(tense)
        return words

    # -- templates: statements

    def _statement_past(self) -> list[str]:
        subject = self._subject()
        verbs, obj = self._object()
        return [*subject.words, past(self._pick(verbs)), *obj.words, *self._tail("past")]

    def _statement_present(self) -> list[str]:
        subject = self._subject()
        verbs, obj = self._object()
        return [*subject.words, self._verb_present(verbs, subject), *obj.words, *self._tail("present")]

    def _statement_future(self) -> list[str]:
        subject = self._subject()
        verbs, obj = self._object()
        modal = self._pick(MODALS)
        return [*subject.words, modal, base_form(self._pick(verbs)), *obj.words, *self._tail("future")]

    def _statement_progressive(self) -> list[str]:
        subject = self._subject()
        verbs, obj = self._object()
        tense = self._pick(("present", "past"))
        return [*subject.words, self._be(subject, tense), gerund(self._pick(verbs)), *obj.words,
                *self._tail(tense, time_p=0.2)]

    def _verb_phrase(self, entries: Sequence[str], subject: Phrase) -> tuple[list[str], str]:
        """A verb without object in a random tense: ``laughed``, ``will laugh``, ``laughs``, ``is laughing``."""
        entry = self._pick(entries)
        tense = self._pick(("past", "past", "present", "future", "progressive"))
        if tense == "past":
            return [past(entry)], "past"
        if tense == "present":
            return [third_person(entry) if subject.third_singular else base_form(entry)], "present"
        if tense == "future":
            return [self._pick(MODALS), base_form(entry)], "future"
        return [self._be(subject, "present"), gerund(entry)], "present"

    def _statement_intransitive(self) -> list[str]:
        subject = self._subject()
        verb, tense = self._verb_phrase(INTRANSITIVE_VERBS, subject)
        return [*subject.words, *verb, *self._tail(tense, adverb_p=0.6, time_p=0.6)]

    def _statement_copula(self) -> list[str]:
        subject = self._determined(PLACES + OBJECTS + FOODS + ANIMALS, adjective_p=0.2)
        tense = self._pick(("present", "past"))
        degree = [self._pick(DEGREES)] if self._maybe(0.5) else []
        words = [*subject.words, self._be(subject, tense), *degree, self._pick(ADJECTIVES)]
        if self._maybe(0.4):
            words += [self._pick(("and", "but")), self._pick(ADJECTIVES)]
        return words + self._tail(tense, place_p=0.3, time_p=0.3, adverb_p=0.0)

    def _statement_there(self) -> list[str]:
        noun = plural(self._pick(OBJECTS + ANIMALS + FOODS + PEOPLE))
        verb = self._pick(("are", "were"))
        adjective = [self._pick(ADJECTIVES)] if self._maybe(0.6) else []
        return ["there", verb, *number_words(self.rng.randint(2, 99)), *adjective, noun, *self._place()]

    def _statement_travel(self) -> list[str]:
        subject = self._subject()
        verb, tense = self._verb_phrase(MOTION_VERBS, subject)
        destination = [self._pick(CITIES)] if self._maybe(0.5) else ["the", self._pick(PLACES)]
        words = [*subject.words, *verb, "to", *destination]
        if self._maybe(0.5):
            words += self._pick((["with", self._pick(NAMES)], self._time(tense), [self._pick(ADVERBS)]))
        return words

    def _statement_negative(self) -> list[str]:
        subject = self._subject()
        verbs, obj = self._object()
        if self._maybe(0.5):
            aux = "didn't"
        elif subject.third_singular:
            aux = "doesn't"
        else:
            aux = self._pick(("don't", "can't", "won't"))
        return [*subject.words, aux, base_form(self._pick(verbs)), *obj.words, *self._tail("present", time_p=0.2)]

    def _statement_contracted(self) -> list[str]:
        """``i'm cooking the soup tonight``, ``she'll visit dublin``, ``it's rather cold outside``."""
        roll = self.rng.random()
        if roll < 0.4:
            verbs, obj = self._object()
            subject = self._pick(("i'm", "you're", "he's", "she's", "we're", "they're"))
            return [subject, gerund(self._pick(verbs)), *obj.words, *self._tail("present", time_p=0.3)]
        if roll < 0.7:
            verbs, obj = self._object()
            subject = self._pick(("i'll", "you'll", "he'll", "she'll", "we'll", "they'll"))
            return [subject, base_form(self._pick(verbs)), *obj.words, *self._tail("future")]
        degree = [self._pick(DEGREES)] if self._maybe(0.6) else []
        return ["it's", *degree, self._pick(ADJECTIVES), *self._tail("present", place_p=0.7, time_p=0.4, adverb_p=0)]

    def _possessive(self) -> list[str]:
        owner = self._pick(NAMES) + "'s"
        noun, is_plural = self._noun(OBJECTS + ANIMALS, plural_p=0.3)
        tense = self._pick(("present", "past"))
        be = {("present", False): "is", ("present", True): "are", ("past", False): "was", ("past", True): "were"}
        degree = [self._pick(DEGREES)] if self._maybe(0.4) else []
        return [owner, noun, be[tense, is_plural], *degree, self._pick(ADJECTIVES), *self._tail(tense, 0.4, 0.3, 0)]

    # -- templates: questions

    def _question_yes_no(self) -> list[str]:
        subject = self._subject()
        verbs, obj = self._object()
        if self._maybe(0.5):
            aux, tense = "did", "past"
        else:
            aux, tense = self._pick(MODALS), "future"
        return [aux, *subject.words, base_form(self._pick(verbs)), *obj.words, *self._tail(tense, 0.4, 0.3, 0.1)]

    def _question_wh(self) -> list[str]:
        roll = self.rng.random()
        if roll < 0.35:
            subject = self._subject()
            verbs, obj = self._object()
            aux = self._pick(("did", "will", "should", "can"))
            return [self._pick(("where", "why", "when", "how")), aux, *subject.words, base_form(self._pick(verbs)),
                    *obj.words]
        if roll < 0.55:
            subject = self._determined(PLACES + OBJECTS + FOODS + ANIMALS + PEOPLE, adjective_p=0.2)
            be = self._be(subject, self._pick(("present", "past")))
            return ["why", be, *subject.words, self._pick(("so", "always", "still", "never")), self._pick(ADJECTIVES)]
        if roll < 0.8:
            verbs, obj = self._object()
            return ["who", past(self._pick(verbs)), *obj.words, *self._tail("past", 0.5, 0.3, 0)]
        noun, _ = self._noun(OBJECTS + FOODS + ANIMALS, plural_p=0.0)
        return ["which", noun, "did", self._pick(NAMES), base_form(self._pick(THING_VERBS)), *self._tail("past", 0.4,
                                                                                                        0.4, 0)]

    def _question_how_many(self) -> list[str]:
        noun = plural(self._pick(OBJECTS + FOODS + ANIMALS))
        subject = self._subject()
        aux = self._pick(("did", "will", "can"))
        verb = base_form(self._pick(("buy:bought", "find:found", "see:saw", "count", "need", "want", "sell:sold")))
        return ["how", "many", noun, aux, *subject.words, verb, *self._tail("past" if aux == "did" else "future",
                                                                          0.4, 0.3, 0)]

    # -- templates: commands

    def _command(self) -> list[str]:
        verbs, obj = self._object()
        please = ["please"] if self._maybe(0.4) else []
        return [*please, base_form(self._pick(verbs)), *obj.words, *self._tail("future", 0.5, 0.3, 0.3)]

    def _command_negative(self) -> list[str]:
        verbs, obj = self._object()
        return ["don't", base_form(self._pick(verbs)), *obj.words, *self._tail("future", 0.4, 0.4, 0.2)]

    def _suggestion(self) -> list[str]:
        if self._maybe(0.5):
            verbs, obj = self._object()
            return ["let's", base_form(self._pick(verbs)), *obj.words, *self._tail("future", 0.5, 0.5, 0.1)]
        destination = [self._pick(CITIES)] if self._maybe(0.5) else ["the", self._pick(PLACES)]
        return ["let's", base_form(self._pick(MOTION_VERBS)), "to", *destination, *self._tail("future", 0, 0.6, 0)]

    # -- public

    def sentence(self) -> str:
        """One sentence of ``MIN_WORDS``..``max_words`` words (longer or shorter draws are redrawn)."""
        while True:
            words = self._pick(self._templates)()
            if MIN_WORDS <= len(words) <= self.max_words:
                return " ".join(words)

    def sentences(self, n: int) -> list[str]:
        return [self.sentence() for _ in range(n)]


def unique_sentences(n: int, seed: int | str = 0, exclude: Iterable[str] = (), max_words: int = MAX_WORDS
                     ) -> list[str]:
    """``n`` distinct sentences not in ``exclude``, in generation order; deterministic for a seed."""
    generator = SentenceGenerator(seed, max_words)
    seen = set(exclude)
    out: list[str] = []
    for _ in range(50 * n + 1000):  # duplicates are rare; the bound only guards against an exhausted grammar
        if len(out) == n:
            return out
        s = generator.sentence()
        if s not in seen:
            seen.add(s)
            out.append(s)
    if len(out) == n:
        return out
    raise RuntimeError(f"sentence grammar produced only {len(out)} distinct sentences of {n} requested")


def vocabulary() -> frozenset[str]:
    """Every word form the grammar can emit (for tests and token-list sanity checks)."""
    nouns = OBJECTS + FOODS + ANIMALS + PEOPLE + PLACES
    verbs = THING_VERBS + FOOD_VERBS + SOCIAL_VERBS + INTRANSITIVE_VERBS + MOTION_VERBS
    words: set[str] = set(FUNCTION_WORDS + ADJECTIVES + DEGREES + ADVERBS + CITIES + NAMES + DAYS + MONTHS + MODALS)
    words |= {word for n in NUMBER_RANGE for word in number_words(n)} | set(PARTS_OF_DAY)
    words |= {plural(e) for e in AGO_UNITS}
    words |= {f(e) for e in nouns for f in (base_form, plural)}
    words |= {f(e) for e in verbs for f in (base_form, third_person, past, gerund)}
    words |= {name + "'s" for name in NAMES}
    return frozenset(words)
