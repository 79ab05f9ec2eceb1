"""Unit tests of the password policy, Argon2id hashing and the field rules (no app, no I/O)."""

from __future__ import annotations

import threading
import time
import unicodedata

import pytest
from argon2 import PasswordHasher, extract_parameters
from argon2 import Type as Argon2Type

from authserver.accounts import passwords, validation
from authserver.accounts.passwords import (
    MAX_LENGTH,
    MIN_LENGTH,
    PasswordHashing,
    common_passwords,
    policy_errors,
)
from tests.conftest import PASSWORD

USERNAME = "martin.dupont"
EMAIL = "jeanne.durand@entreprise.fr"


def test_nist_bounds():
    assert MIN_LENGTH == 12
    assert MAX_LENGTH >= 128


def test_common_list_is_a_maintained_offline_list_of_at_least_10000():
    words = common_passwords()
    assert len(words) >= 10_000
    # Words the tests below rely on really are in it (and the French one is not: checked).
    for word in ("password1234", "qwerty123456", "1q2w3e4r5t6y", "azertyuiop"):
        assert word in words
    assert "azertyuiop123" not in words


LONG = "Une phrase de passe assez longue pour tout le monde ! " * 5
# (password, fragment of the expected error or None when accepted)
POLICY_TABLE = [
    ("a" * 0, "au moins 12 caractères"),
    ("court", "au moins 12 caractères"),
    ("onze car. 1", "au moins 12 caractères"),  # 11 characters
    ("douze car. 1", None),  # 12 characters
    ("x9àéèùâêîôûç", None),  # 12 characters, accents count as one each
    ("girafe bleue du jardin", None),  # spaces are fine, no composition rules
    ("lettresminusculesseules", None),  # lowercase letters only: no composition rules
    ("739158264017", None),  # digits only, not a sequence
    ("🔑🔑 clé d'accès 🔑", None),  # any Unicode
    ("密码是一个很长的句子吗", "au moins 12 caractères"),  # 11 CJK characters
    ("密码是一个很长的句子吗？", None),  # 12
    (LONG[:256], None),  # exactly 256
    (LONG[:257], "ne doit pas dépasser 256 caractères"),  # 257
    ("password1234", "trop courant"),
    ("PASSWORD1234", "trop courant"),  # the list is checked ignoring case
    ("qwerty123456", "trop courant"),
    ("1q2w3e4r5t6y", "trop courant"),
    ("aaaaaaaaaaaaaaaa", "trop courant"),  # one repeated character
    ("abababababababab", "trop courant"),  # two characters
    # The audit's: a listed word with a few digits or symbols around it is that word.
    ("azertyuiop123", "trop courant"),
    ("motdepasse123", "trop courant"),
    ("iloveyou1234", "trop courant"),
    ("Marseille2024!", "trop courant"),
    ("!!Soleil 2026", "trop courant"),
    ("jetaime12345", "trop courant"),
    ("mot de passe", "trop courant"),  # French, without its spaces
    ("Mot-de-Passe 2026 !", "trop courant"),
    ("Chat84736201", None),  # a long random suffix: left to the estimate, which accepts it
    # Walks on the keyboard (AZERTY too) or along digits and letters.
    ("123456789012", "suite de touches"),
    ("abcdefghijkl", "suite de touches"),
    ("qsdfghjklmwx", "suite de touches"),
    ("1aqw2zsx3edc", "suite de touches"),
    ("&é\"'(-è_çà)=", "suite de touches"),
    ("0987 6543 2109", "suite de touches"),
    # zxcvbn's estimate (under a million guesses), explained in French.
    ("x9éééééééééé", "trop facile à deviner : il répète"),
    ("pq" + "ü" * 254, "trop facile à deviner : il répète"),
    ("Martin.Dupont 2026 !", "votre identifiant"),
    ("mon MARTIN.DUPONT préféré", "votre identifiant"),
    ("jeanne.durand au bureau", "votre adresse e-mail"),
    ("JEANNE.DURAND au bureau", "votre adresse e-mail"),
    ("entreprise.fr est super", None),  # the domain is not the local part
    # This portal's own words, whatever the spacing and case (ASVS 6.2.11).
    ("France Travail Pro 2026", "mots de ce service"),
    ("ESPACE entreprise !!", "mots de ce service"),
    ("PoleEmploi Connexion 1", "mots de ce service"),
    ("mon espace entreprise chez moi", None),  # other words too: a phrase
]


@pytest.mark.parametrize(("password", "expected"), POLICY_TABLE)
def test_policy(password, expected):
    errors = policy_errors(password, username=USERNAME, email=EMAIL)
    if expected is None:
        assert errors == []
    else:
        assert any(expected in error for error in errors), errors
        # French sentences, not codes.
        assert all(error[0].isupper() and error.rstrip().endswith(".") for error in errors)


def test_several_reasons_at_once():
    errors = policy_errors("martin.dupont et jeanne.durand", username=USERNAME, email=EMAIL)
    assert len(errors) == 2


def test_length_counts_after_nfkc_normalisation():
    # U+FB03 (ﬃ) becomes "ffi" under NFKC: 3 + 9 = 12 characters after normalisation.
    assert policy_errors("\ufb03" + "7Kq2m9Zx4") == []
    assert policy_errors("ﬀ" + "7Kq2m9Zx4") != []  # ﬀ is "ff": 11
    # Decomposed accents (NFD) count as one character each once composed.
    nfd = unicodedata.normalize("NFD", "àéèùâêîôûç" + "xy")
    assert len(nfd) == 22
    assert policy_errors(nfd) == []
    assert policy_errors(unicodedata.normalize("NFD", "àéèùâêîôû" + "xy")) != []


@pytest.mark.parametrize(
    "password",
    [
        PASSWORD,  # the suite's own
        "multi: correct horse battery staple 42",
        "bench: correct horse battery staple 42",
        "un tout nouveau mot de passe 2026",
        *[f"nouveau mot de passe numéro {i}" for i in range(10)],
        "bada5566-a7aa-401f-bd96-45619a55120d",
        "Une phrase de passe assez longue pour tout le monde ! ",
    ],
)
def test_the_passwords_the_tests_use_are_accepted(password):
    assert policy_errors(password, username=USERNAME, email="martin.dupont@entreprise.fr") == []


def test_every_refusal_says_why_in_french():
    for password in ("123456789012", "azertyuiop123", "x9éééééééééé"):
        [error] = policy_errors(password)
        assert error.startswith("Ce mot de passe est trop ")
        assert "Choisissez" in error


@pytest.mark.parametrize(
    ("username", "email", "password", "refused"),
    [
        ("ab", "", "ab, puis une phrase", False),  # identifiants under 3 characters not searched
        ("", "jo@entreprise.fr", "jo, puis une phrase", False),  # same for a 2-letter local part
        ("abc", "", "xx abc yy zz ww", True),
        ("", "pas-une-adresse", "pas-une-adresse 2026", False),  # no @: no local part
    ],
)
def test_context_words(username, email, password, refused):
    assert bool(policy_errors(password, username=username, email=email)) is refused


# --------------------------------------------------------------------------- hashing

HASHING = PasswordHashing(memory_kib=19 * 1024, time_cost=2, parallelism=1)


def test_hash_is_argon2id_at_owasp_parameters():
    stored = HASHING.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    params = extract_parameters(stored)
    assert params.type is Argon2Type.ID
    assert params.memory_cost >= 19 * 1024
    assert params.time_cost >= 2
    assert params.parallelism == 1
    assert "correct horse" not in stored


def test_hashes_are_salted():
    assert HASHING.hash("same password here") != HASHING.hash("same password here")


def test_verify():
    stored = HASHING.hash("correct horse battery staple")
    assert HASHING.verify(stored, "correct horse battery staple").ok
    assert not HASHING.verify(stored, "correct horse battery stapl").ok
    assert not HASHING.verify(stored, "Correct horse battery staple").ok
    assert not HASHING.verify(None, "correct horse battery staple").ok
    assert not HASHING.verify("not a hash", "correct horse battery staple").ok


def test_verify_normalises_like_hash():
    composed = unicodedata.normalize("NFC", "café crème brûlée")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    assert HASHING.verify(HASHING.hash(composed), decomposed).ok


def test_needs_rehash_when_parameters_change():
    weak = PasswordHasher(memory_cost=8 * 1024, time_cost=1, parallelism=1)
    stored = weak.hash(passwords.normalize("an old hash from 2020"))
    result = HASHING.verify(stored, "an old hash from 2020")
    assert result.ok and result.needs_rehash
    assert not HASHING.verify(HASHING.hash("a new hash"), "a new hash").needs_rehash


@pytest.mark.parametrize(
    "hasher",
    [
        PasswordHasher(memory_cost=19 * 1024, time_cost=2, parallelism=1),  # HASHING's
        PasswordHasher(memory_cost=19 * 1024, time_cost=2, parallelism=1, salt_len=8),
        PasswordHasher(memory_cost=19 * 1024, time_cost=2, parallelism=1, hash_len=16),
        PasswordHasher(memory_cost=19 * 1024, time_cost=3, parallelism=1),
        PasswordHasher(memory_cost=8 * 1024, time_cost=2, parallelism=1),
        PasswordHasher(memory_cost=19 * 1024, time_cost=2, parallelism=2),
        PasswordHasher(memory_cost=8 * 1024, time_cost=1, parallelism=1, type=Argon2Type.I),
    ],
)
def test_the_remembered_rehash_answer_is_argon2s_for_every_kind_of_hash(hasher):
    """The answer is kept per parameters and salt and digest lengths: each of them alone
    changes it as argon2-cffi's own check says, asked once and again (remembered)."""
    password = "correct horse battery staple"
    for _ in range(2):
        stored = hasher.hash(passwords.normalize(password))
        result = HASHING.verify(stored, password)
        assert result.ok
        assert result.needs_rehash == HASHING.hasher.check_needs_rehash(stored)
    same = hasher.memory_cost == 19 * 1024 and hasher.time_cost == 2 and hasher.parallelism == 1
    assert result.needs_rehash != (same and hasher.salt_len == 16 and hasher.hash_len == 32)


# --------------------------------------------------------------------------- field rules

USERNAME_TABLE = [
    ("martin.dupont", "martin.dupont"),
    ("Martin.Dupont", "Martin.Dupont"),  # case kept for display
    ("  martin.dupont  ", "martin.dupont"),
    ("a1b", "a1b"),
    ("jean_pierre-2", "jean_pierre-2"),
    ("contact@entreprise.fr", "contact@entreprise.fr"),
    ("ｍａｒｔｉｎ", "martin"),  # full-width letters are folded (NFKC)
    ("a" * 64, "a" * 64),
    ("ab", None),
    ("a" * 65, None),
    ("", None),
    ("   ", None),
    ("martin dupont", None),
    ("émile.dupont", None),
    ("martin/dupont", None),
    ("martin+dupont", None),
    ("-martin", None),
    ("martin.", None),
    ("名前です", None),
    ("martin\x00dupont", None),
]


@pytest.mark.parametrize(("raw", "clean"), USERNAME_TABLE)
def test_clean_username(raw, clean):
    if clean is None:
        with pytest.raises(validation.InvalidField) as info:
            validation.clean_username(raw)
        assert "identifiant" in str(info.value).lower()
    else:
        assert validation.clean_username(raw) == clean


def test_invalid_username_message_says_which_characters_are_allowed():
    with pytest.raises(validation.InvalidField) as info:
        validation.clean_username("martin dupont")
    assert validation.USERNAME_RULE in str(info.value)
    assert "3 à 64" in validation.USERNAME_RULE


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Martin.Dupont", "martin.dupont"),
        ("MARTIN.DUPONT", "martin.dupont"),
        ("ｍａｒｔｉｎ", "MARTIN"),
    ],
)
def test_username_key_ignores_case_and_width(a, b):
    assert validation.username_key(a) == validation.username_key(b)


EMAIL_TABLE = [
    ("contact@entreprise.fr", "contact@entreprise.fr"),
    (" contact@entreprise.fr ", "contact@entreprise.fr"),
    ("Contact@Entreprise.FR", "Contact@entreprise.fr"),  # domain lower-cased
    ("élise@entreprise.fr", "élise@entreprise.fr"),
    ("", None),
    ("pas-une-adresse", None),
    ("contact@entreprise", None),
    ("a@b", None),
    ("contact@@entreprise.fr", None),
    ("jean dupont@entreprise.fr", None),
    ("x" * 250 + "@entreprise.fr", None),
]


@pytest.mark.parametrize(("raw", "clean"), EMAIL_TABLE)
def test_clean_email(raw, clean):
    if clean is None:
        with pytest.raises(validation.InvalidField) as info:
            validation.clean_email(raw)
        assert "adresse e-mail" in str(info.value).lower()
    else:
        assert validation.clean_email(raw) == clean


def test_email_key_ignores_case():
    assert validation.email_key("Contact@Entreprise.FR") == validation.email_key(
        "contact@entreprise.fr"
    )


PHONE_TABLE = [
    ("07 12 34 56 78", "+33712345678"),  # the seed's example
    ("06 12 34 56 78", "+33612345678"),
    ("0612345678", "+33612345678"),
    ("06.12.34.56.78", "+33612345678"),
    ("06-12-34-56-78", "+33612345678"),
    ("01 23 45 67 89", "+33123456789"),
    ("+33 (0)7 12 34 56 78", "+33712345678"),
    ("+33612345678", "+33612345678"),
    ("0033 6 12 34 56 78", "+33612345678"),
    ("+32 470 12 34 56", "+32470123456"),  # another country with its prefix
    ("+1 202 555 0143", "+12025550143"),
    ("", None),
    ("12", None),
    ("06 12", None),
    ("0612345", None),
    ("06 12 34 56 7a", None),
    ("+33 6 12 34 56 78 9", None),
    ("abcdefghij", None),
    ("0" * 40, None),
]


@pytest.mark.parametrize(("raw", "e164"), PHONE_TABLE)
def test_clean_phone(raw, e164):
    if e164 is None:
        with pytest.raises(validation.InvalidField) as info:
            validation.clean_phone(raw)
        assert "téléphone" in str(info.value).lower()
    else:
        assert validation.clean_phone(raw) == e164


NAME_TABLE = [
    ("Dupont", "Dupont"),
    ("  Le   Goff ", "Le Goff"),
    ("N'Diaye-Éléonore", "N'Diaye-Éléonore"),
    ("", None),
    ("   ", None),
    ("x" * 101, None),
    ("Du\x00pont", None),
    ("Du\u200bpont", None),  # zero-width space (format character)
]


@pytest.mark.parametrize(("raw", "clean"), NAME_TABLE)
def test_clean_name(raw, clean):
    if clean is None:
        with pytest.raises(validation.InvalidField) as info:
            validation.clean_name(raw, "nom")
        assert "nom" in str(info.value)
    else:
        assert validation.clean_name(raw, "nom") == clean


class _Overlap:
    """The real hasher, counting how many of its computations run at the same moment."""

    def __init__(self, hasher: PasswordHasher) -> None:
        self.hasher = hasher
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def _count(self, call, *args):  # type: ignore[no-untyped-def]
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(0.01)  # long enough for the other threads to arrive
            return call(*args)
        finally:
            with self.lock:
                self.now -= 1

    def hash(self, password: str) -> str:
        return self._count(self.hasher.hash, password)

    def verify(self, stored: str, password: str) -> bool:
        return self._count(self.hasher.verify, stored, password)

    def check_needs_rehash(self, stored: str) -> bool:
        return self.hasher.check_needs_rehash(stored)


@pytest.mark.parametrize("at_once", [1, 2])
def test_a_worker_computes_at_most_its_share_of_hashes_at_once(at_once):
    hashing = PasswordHashing(memory_kib=8 * 1024, time_cost=1, parallelism=1)
    stored = hashing.hash("correct horse battery staple")
    hashing.limit(at_once)
    overlap = _Overlap(hashing.hasher)
    hashing.hasher = overlap  # type: ignore[assignment]
    results: list[bool] = []

    def login(n: int) -> None:
        if n % 3 == 0:
            results.append(hashing.verify(None, "inconnu").ok)  # the unknown account's
        elif n % 3 == 1:
            results.append(bool(hashing.hash("un nouveau mot de passe")))
        else:
            results.append(hashing.verify(stored, "correct horse battery staple").ok)

    threads = [threading.Thread(target=login, args=(n,)) for n in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False] * 3 + [True] * 6  # every one done, and right
    assert overlap.most == at_once


@pytest.mark.parametrize(
    ("cores", "workers", "at_once"), [(2, 2, 1), (2, 4, 1), (4, 2, 2), (8, 3, 3), (1, 1, 1)]
)
def test_hashes_at_once_is_a_workers_share_of_the_cores(cores, workers, at_once):
    assert passwords.hashes_at_once(cores, workers) == at_once


def test_serve_limits_each_workers_hashing(app):
    from authserver.accounts.service import HASHING_KEY
    from authserver.serving import limit_hashing

    hashing = app.extensions[HASHING_KEY]
    limit_hashing(app, workers=10_000)
    assert hashing._turns.acquire(blocking=False)
    assert not hashing._turns.acquire(blocking=False)  # one turn: the worker's share
    hashing._turns.release()


def _hold_slots(directory: str, cores: int, home: int, rounds: int, log: str) -> None:
    """A worker: ``rounds`` times, a slot held for 20 ms (a hash), its start and end logged."""
    import time
    from pathlib import Path

    from authserver.accounts.hash_slots import HashSlots

    slots = HashSlots(Path(directory), cores, home)
    with open(log, "a") as out:
        for _ in range(rounds):
            with slots.turn():
                out.write(f"+ {time.monotonic()}\n")
                out.flush()
                time.sleep(0.02)
                out.write(f"- {time.monotonic()}\n")
                out.flush()


def test_workers_share_one_slot_per_core(tmp_path):
    """Issue 16: with more workers than cores (serve's default: two per core), each worker
    computed one hash at a time, twice as many as cores in all."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    logs = [tmp_path / f"worker{i}.log" for i in range(4)]
    workers = [
        context.Process(target=_hold_slots, args=(str(tmp_path / "slots"), 2, i, 10, str(logs[i])))
        for i in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    events = sorted(
        (float(stamp), kind == "+")
        for log in logs
        for kind, stamp in (line.split() for line in log.read_text().splitlines())
    )
    assert sum(1 for _, start in events if start) == 40
    running = most = 0
    for _, start in events:
        running += 1 if start else -1
        most = max(most, running)
    assert most == 2  # both cores used, never more


def test_a_killed_workers_slot_is_free_again(tmp_path):
    import multiprocessing
    import os
    import signal
    import time

    from authserver.accounts.hash_slots import HashSlots

    context = multiprocessing.get_context("fork")
    ready = context.Event()

    def hold_for_ever() -> None:
        slots = HashSlots(tmp_path, 1, 0)
        with slots.turn():
            ready.set()
            time.sleep(60)

    holder = context.Process(target=hold_for_ever)
    holder.start()
    assert ready.wait(10)
    mine = HashSlots(tmp_path, 1, 0)
    os.kill(holder.pid, signal.SIGKILL)  # killed while holding the only slot
    holder.join(10)
    started = time.monotonic()
    with mine.turn():
        assert time.monotonic() - started < 5
    mine.close()


def test_serve_shares_slots_when_workers_outnumber_cores(app):
    from authserver.accounts.passwords import usable_cores
    from authserver.accounts.service import HASHING_KEY
    from authserver.serving import limit_hashing

    hashing = app.extensions[HASHING_KEY]
    limit_hashing(app, workers=usable_cores())
    assert hashing._slots is None  # a share of the cores each: nothing to share
    limit_hashing(app, workers=usable_cores() + 1, home=3)
    assert hashing._slots is not None and hashing._slots.cores == usable_cores()
    assert hashing.verify(hashing.hash("un mot de passe"), "un mot de passe").ok
