"""Search tokens: what the forum signs is read back exactly; anything else is refused, saying why."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from service.tokens import TokenError, Viewer, read_token

SECRET = "a-long-random-secret-the-forum-shares-with-qa-search"


def _token(claims: dict, key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


#: Stands for "this many seconds from now" in the parametrised claims below: they are written
#: when the module is collected, minutes before a long suite reaches them.
IN = "in"


def _at_run_time(claims: dict) -> dict:
    now = int(time.time())
    return {k: now + v[1] if isinstance(v, tuple) and v[0] == IN else v for k, v in claims.items()}


def test_a_valid_token_gives_its_groups():
    token = _token({"groups": ["moderators", "grief-group"], "exp": int(time.time()) + 300})
    assert read_token(token, SECRET) == Viewer(frozenset({"moderators", "grief-group"}), signed_in=True)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"groups": ["a"], "exp": (IN, -3600)}, "has expired"),
        ({"groups": ["a"]}, "has no 'exp' claim"),
        ({"exp": (IN, 300)}, "has no 'groups' claim"),
        ({"groups": "moderators", "exp": (IN, 300)}, "groups must be a list"),
        ({"groups": [1, 2], "exp": (IN, 300)}, "groups must be a list"),
        ({"groups": ["g"] * 300, "exp": (IN, 300)}, "groups must be a list"),
    ],
)
def test_a_token_with_bad_claims_is_refused_saying_why(claims, reason):
    with pytest.raises(TokenError, match=reason):
        read_token(_token(_at_run_time(claims)), SECRET)


def test_a_token_signed_with_another_secret_is_refused():
    token = _token({"groups": ["a"], "exp": int(time.time()) + 300}, key="another-secret-of-enough-length!!")
    with pytest.raises(TokenError, match="signature is wrong"):
        read_token(token, SECRET)


def test_a_tampered_token_is_refused():
    token = _token({"groups": ["public"], "exp": int(time.time()) + 300})
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["groups"] = ["moderators"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="signature is wrong"):
        read_token(f"{header}.{forged}.{signature}", SECRET)


def test_an_unsigned_token_is_refused():
    token = jwt.encode({"groups": ["moderators"], "exp": int(time.time()) + 300}, None, algorithm="none")
    with pytest.raises(TokenError, match="must be signed with HS256"):
        read_token(token, SECRET)


def test_an_rs256_token_is_refused_even_when_the_secret_is_its_public_key():
    # the classic confusion: a verifier that trusts the header would check an HMAC keyed with
    # the public key, which the attacker knows
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    token = jwt.encode({"groups": ["moderators"], "exp": int(time.time()) + 300}, private, algorithm="RS256")
    with pytest.raises(TokenError, match="must be signed with HS256"):
        read_token(token, public_pem)


@pytest.mark.parametrize("junk", ["", "not-a-token", "a.b.c", "é.é.é"])
def test_junk_is_malformed_and_never_echoed(junk):
    with pytest.raises(TokenError, match="malformed") as err:
        read_token(junk, SECRET)
    assert not junk or junk not in str(err.value)
