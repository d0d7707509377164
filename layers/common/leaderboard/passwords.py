"""Password hashing with argon2id at OWASP's parameters (19 MiB of memory, 2 passes, 1 lane)."""

import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# The hash of a random password nobody knows, made with the parameters above: verified when the username is
# unknown. A constant, so the first unknown-user login of a fresh container is not slower or faster than others.
DECOY_HASH = "$argon2id$v=19$m=19456,t=2,p=1$teKwBMDA+yUNuFfkDJHxTA$QOSW247QdrBwebJlRRj50Zod+xp15mqzldDYr907AW4"


def hash_password(password: str) -> str:
    """A salted argon2id hash in PHC string form (parameters included, so they can be raised later)."""
    return _hasher.hash(_normalized(password))


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether `password` matches. With no stored hash (unknown user) it spends the same work and says no,
    so the answer's timing does not reveal whether the username exists."""
    try:
        return _hasher.verify(stored_hash or DECOY_HASH, _normalized(password)) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(stored_hash)


def _normalized(password: str) -> str:
    # NIST SP 800-63B: the same password typed on two keyboards may differ in Unicode form, not in meaning.
    return unicodedata.normalize("NFKC", password)
