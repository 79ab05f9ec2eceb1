"""Password policy (NIST SP 800-63B) and Argon2id hashing. No Flask, no I/O.

Policy: at least 12 characters, up to 256, any Unicode (NFKC-normalised before
hashing and checking, as 63B recommends), no composition rules. Refused, with the
reason in French, when it is:

- among the 30,000 most common passwords (the list shipped by the maintained ``zxcvbn``
  package) or a common French password or word (``authserver/data``), compared as typed,
  without spaces and separators, and with the digits and symbols around it removed (so
  ``azertyuiop123`` and ``motdepasse 2026!`` are the common words they are made of);
- a walk on the keyboard (AZERTY, QWERTY, QWERTZ, keypad rows and columns) or along the
  alphabet or digits, e.g. ``123456789012``, ``qsdfghjklmwx``;
- easy to guess for zxcvbn's estimator (score 0 or 1: under a million guesses), which
  also knows the French words above;
- containing the identifiant or the e-mail's local part;
- made only of this portal's own words (``PORTAL_WORDS``: « France Travail Pro 2026 »,
  « Espace Entreprise ! »), whatever the spaces, case and digits (ASVS 6.2.11).

The data files are read once (files shipped in the package, not I/O per call).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from authserver.accounts.hash_slots import HashSlots

MIN_LENGTH = 12
MAX_LENGTH = 256
CONTEXT_MIN = 3  # identifiants or local parts shorter than this are not searched for
CORE_MIN = 4  # letters left once digits and symbols around them are removed, to look up
AFFIX_MAX = 6  # digits/symbols around a common word that still leave it common (a year, "!")
WALK_MIN = 3  # the shortest run that counts as a piece of a keyboard walk
ZXCVBN_MAX = 72  # zxcvbn refuses longer input; the first 72 characters bound the estimate
ZXCVBN_MIN_SCORE = 2  # 0 and 1: under 10^6 guesses
FRENCH_LIST = Path(__file__).resolve().parent.parent / "data" / "common_passwords_fr.txt"

# Keys in reading order (rows, then columns) of the layouts people in France use, the
# digits and the alphabet; a password made only of runs along these (either way) is a walk.
KEYBOARD_RUNS = (
    "azertyuiopqsdfghjklmwxcvbn",  # AZERTY rows
    "qwertyuiopasdfghjklzxcvbnm",  # QWERTY rows
    "qwertzuiopasdfghjklyxcvbnm",  # QWERTZ rows
    "1aqw2zsx3edc4rfv5tgb6yhn7uj8ik9ol0pm",  # AZERTY columns
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",  # QWERTY columns
    "&é\"'(-è_çà)=",  # AZERTY digit row, without Shift
    "789456123",  # keypad rows
    "741852963",  # keypad columns
    "012345678901234567890123456789",  # digits, going round
    "abcdefghijklmnopqrstuvwxyz",
)
_SEPARATORS = re.compile(r"[\s._\-'’]+")
# The words of this service that people build passwords from (ASVS 6.2.11: context-specific
# words). A password of these alone, with a few digits or symbols, is refused.
PORTAL_WORDS = frozenset(
    {
        "france", "travail", "francetravail", "pro", "pole", "poleemploi", "emploi",
        "portail", "espace", "entreprise", "entreprises", "employeur", "recrutement",
        "compte", "connexion", "motdepasse", "passe", "mot", "csp", "kit", "siret",
        "conseiller", "offre", "offres", "candidat", "service", "services",
    }
)  # fmt: skip
_NOT_LETTERS = re.compile(r"[\W\d_]+")
_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")

COMMON = (
    "Ce mot de passe est trop courant : il figure dans les listes de mots de passe "
    "les plus utilisés ou divulgués. Choisissez-en un autre."
)
WALK = (
    "Ce mot de passe est trop courant : c'est une suite de touches du clavier ou de "
    "caractères (comme « azerty » ou « 123456 »), parmi les premières essayées. "
    "Choisissez-en un autre."
)
PORTAL = (
    "Ce mot de passe est trop facile à deviner : il n'est fait que de mots de ce service "
    "(France Travail, espace entreprise…). Choisissez par exemple une phrase de plusieurs "
    "mots sans rapport entre eux."
)
GUESSABLE = (
    "Ce mot de passe est trop facile à deviner : {why}. Choisissez par exemple une "
    "phrase de plusieurs mots sans rapport entre eux."
)
GUESSABLE_WHY = {
    "repeat": "il répète les mêmes caractères ou groupes de caractères",
    "sequence": "c'est une suite logique de caractères (abcd, 1234…)",
    "spatial": "c'est une suite de touches voisines du clavier",
    "date": "il est fait d'une date",
    "dictionary": "il est fait de mots ou de mots de passe courants à peine modifiés",
}


def normalize(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(word.casefold() for word in FREQUENCY_LISTS["passwords"])


def _plain(text: str) -> str:
    """Case, accents and separators folded: « Mot de passe » → ``motdepasse``."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    unaccented = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SEPARATORS.sub("", unaccented)


@lru_cache(maxsize=1)
def french_words() -> tuple[str, ...]:
    """Common French passwords and words, most common first (as zxcvbn ranks them)."""
    lines = FRENCH_LIST.read_text(encoding="utf-8").splitlines()
    words = (_plain(line) for line in lines if line.strip() and not line.startswith("#"))
    return tuple(dict.fromkeys(word for word in words if word))


@lru_cache(maxsize=1)
def _known() -> frozenset[str]:
    return common_passwords() | {_plain(word) for word in common_passwords()} | set(french_words())


def _is_common(folded: str) -> bool:
    """In the lists as typed or without separators, or a listed word with a few digits or
    symbols around it (``motdepasse123``, ``Marseille2024!``, ``azerty 123456``)."""
    plain = _plain(folded)
    known = _known()
    if folded in known or plain in known or len(set(plain or folded)) < 3:
        return True
    core = _EDGES.sub("", plain)
    if len(core) < CORE_MIN or core == plain or core not in known:
        return False
    affixes = plain.replace(core, "", 1)
    return len(affixes) <= AFFIX_MAX or is_keyboard_walk(affixes)


def is_portal_words(password: str) -> bool:
    """Only words of ``PORTAL_WORDS`` (in any order, case, spacing), and at most a few digits
    or symbols: « France Travail Pro 2026 », « ESPACEentreprise!! »."""
    plain = _plain(password)
    letters = _NOT_LETTERS.sub("", plain)
    if not letters or len(plain) - len(letters) > AFFIX_MAX:
        return False
    # Can ``letters`` be cut into portal words? (word break, over at most 256 characters)
    ends = [True] + [False] * len(letters)
    longest = max(len(word) for word in PORTAL_WORDS)
    for end in range(1, len(letters) + 1):
        ends[end] = any(
            ends[start] and letters[start:end] in PORTAL_WORDS
            for start in range(max(0, end - longest), end)
        )
    return ends[-1]


@lru_cache(maxsize=1)
def _runs() -> tuple[str, ...]:
    return tuple(run for keys in KEYBOARD_RUNS for run in (keys, keys[::-1]))


def is_keyboard_walk(password: str) -> bool:
    """Only runs of 3+ neighbouring keys or characters (``azertyuiop123``, ``1qaz2wsx3edc``)."""
    plain = "".join(ch for ch in password.casefold()[:ZXCVBN_MAX] if not ch.isspace())
    runs = _runs()
    i = 0
    while i < len(plain):
        end = i
        while end < len(plain) and any(plain[i : end + 1] in run for run in runs):
            end += 1
        if end - i < WALK_MIN:
            return False
        i = end
    return bool(plain)


def _guessable(password: str) -> str | None:
    """zxcvbn's reason when it estimates the password under a million guesses."""
    from zxcvbn import zxcvbn

    result = zxcvbn(password[:ZXCVBN_MAX], user_inputs=list(french_words()))
    if result["score"] >= ZXCVBN_MIN_SCORE:
        return None
    patterns = [match["pattern"] for match in result["sequence"]]
    why = next((GUESSABLE_WHY[p] for p in GUESSABLE_WHY if p in patterns), "il est trop prévisible")
    return GUESSABLE.format(why=why)


def policy_errors(password: str, *, username: str = "", email: str = "") -> list[str]:
    """Why this password is refused, in French; empty when it is acceptable."""
    password = normalize(password)
    length = len(password)
    if length < MIN_LENGTH:
        return [f"Le mot de passe doit contenir au moins {MIN_LENGTH} caractères."]
    if length > MAX_LENGTH:
        return [f"Le mot de passe ne doit pas dépasser {MAX_LENGTH} caractères."]
    folded = password.casefold()
    errors: list[str] = []
    if _is_common(folded):
        errors.append(COMMON)
    elif is_keyboard_walk(folded):
        errors.append(WALK)
    if not errors and is_portal_words(folded):
        errors.append(PORTAL)
    if len(username) >= CONTEXT_MIN and username.casefold() in folded:
        errors.append("Le mot de passe ne doit pas contenir votre identifiant.")
    local_part = email.split("@", 1)[0] if "@" in email else ""
    if len(local_part) >= CONTEXT_MIN and local_part.casefold() in folded:
        errors.append("Le mot de passe ne doit pas contenir votre adresse e-mail.")
    if not errors:
        # One reason is enough: the estimate only speaks when nothing more precise did.
        guessable = _guessable(password)
        if guessable:
            errors.append(guessable)
    return errors


@dataclass(frozen=True)
class Verification:
    ok: bool
    needs_rehash: bool = False


def usable_cores() -> int:
    """The cores this process may run on (a container's CPU set included)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def hashes_at_once(cores: int, workers: int) -> int:
    """How many Argon2id computations one of ``workers`` processes runs at the same time:
    its share of the cores, at least one."""
    return max(1, -(-cores // max(1, workers)))


@lru_cache(maxsize=8)
def _dummy_hash(memory_kib: int, time_cost: int, parallelism: int) -> str:
    """A hash with these parameters, verified instead of an unknown account's so that it
    costs the same. Made once per process and parameters: each app of a process (a test
    run makes hundreds) paid a whole Argon2id computation for it, 40 % of its start."""
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
    return hasher.hash("dummy password for timing equality")


def _shape(stored: str) -> str:
    """What a hash's « needs rehash » depends on: its parameters and the lengths of its
    salt and digest (``$argon2id$v=19$m=…,t=…,p=…$<salt>$<digest>``), the salt and
    digest replaced by as many ``A``s (their values never change the answer)."""
    head, _, tail = stored.rpartition("$")
    head, _, salt = head.rpartition("$")
    return f"{head}${'A' * len(salt)}${'A' * len(tail)}"


class PasswordHashing:
    """Argon2id with configurable cost; verifying an unknown account costs the same.

    Argon2id is memory-hard: each computation walks its own ``memory_kib`` (19 MiB by
    default). More of them at once than there are cores share the caches and the cores'
    time and each one runs slower: measured in one process on 2 cores, 96–99 verifications
    per second with 2 threads, 85 with 4, 81–87 with 8. A worker of ``authserver serve``
    has several threads, and there are several workers: each worker computes at most
    ``hashes_at_once(cores, workers)`` at a time (see ``limit``), the other requests wait
    for their turn without using the CPU.
    """

    def __init__(self, *, memory_kib: int, time_cost: int, parallelism: int) -> None:
        self.hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        self._turns = threading.BoundedSemaphore(usable_cores())
        self._slots: HashSlots | None = None
        self._dummy = _dummy_hash(memory_kib, time_cost, parallelism)

    def limit(self, at_once: int) -> None:
        """At most ``at_once`` computations at the same time in this process from now on."""
        self._turns = threading.BoundedSemaphore(max(1, at_once))

    def share(self, slots: HashSlots) -> None:
        """Take one of ``slots`` (shared with the server's other workers) for each
        computation, after this process's turn: for a worker computing one at a time."""
        self._slots = slots

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        with self._turns:
            slots = self._slots
            if slots is None:
                yield
            else:
                with slots.turn():
                    yield

    def hash(self, password: str) -> str:
        with self._turn():
            return self.hasher.hash(normalize(password))

    def verify(self, stored: str | None, password: str) -> Verification:
        if not stored:
            self.dummy_verify(password)
            return Verification(False)
        try:
            with self._turn():
                self.hasher.verify(stored, normalize(password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return Verification(False)
        return Verification(True, needs_rehash=self._needs_rehash(_shape(stored)))

    @lru_cache(maxsize=16)  # noqa: B019 (one hasher per app, as long-lived as the cache)
    def _needs_rehash(self, shape: str) -> bool:
        """argon2-cffi's check, once per kind of hash: it parses the whole string at each
        call, about 3 % of a password login's Python time around the hash (issue 16)."""
        return self.hasher.check_needs_rehash(shape)

    def dummy_verify(self, password: str) -> None:
        with contextlib.suppress(VerificationError), self._turn():
            self.hasher.verify(self._dummy, normalize(password))
