"""Password hashing: argon2id at OWASP parameters, no truncation, same work for unknown users."""

import pytest
from argon2 import PasswordHasher

from leaderboard import passwords


def test_a_hash_verifies_its_password_only() -> None:
    stored = passwords.hash_password("correct horse battery")

    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify_password(stored, "correct horse battery")
    assert not passwords.verify_password(stored, "correct horse batterY")


def test_the_same_password_gets_a_new_salt_each_time() -> None:
    assert passwords.hash_password("correct horse battery") != passwords.hash_password("correct horse battery")


def test_long_passwords_are_not_truncated() -> None:
    stored = passwords.hash_password("p" * 127 + "a")
    assert not passwords.verify_password(stored, "p" * 127 + "b")


def test_an_unknown_user_is_refused_after_verifying_the_decoy(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_verify = PasswordHasher.verify

    def spy(self: PasswordHasher, stored: str, password: str) -> bool:
        calls.append(stored)
        return real_verify(self, stored, password)

    monkeypatch.setattr(PasswordHasher, "verify", spy)
    assert not passwords.verify_password(None, "any password")

    assert calls == [passwords.DECOY_HASH]


def test_the_decoy_costs_what_a_real_hash_costs() -> None:
    # Same parameters as new hashes, so an unknown username takes as long as a wrong password.
    assert not passwords.needs_rehash(passwords.DECOY_HASH)
    assert passwords.DECOY_HASH.split("$")[:4] == passwords.hash_password("x" * 8).split("$")[:4]


def test_a_corrupt_stored_hash_is_a_refusal_not_a_crash() -> None:
    assert not passwords.verify_password("not-a-hash", "correct horse battery")


def test_weaker_hashes_ask_to_be_rehashed() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash("correct horse battery")
    assert passwords.needs_rehash(weak)
    assert passwords.verify_password(weak, "correct horse battery")


def test_unicode_forms_of_one_password_match() -> None:
    composed, decomposed = "caf\u00e9 au lait", "cafe\u0301 au lait"
    assert passwords.verify_password(passwords.hash_password(composed), decomposed)
