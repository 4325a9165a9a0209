"""Search tokens: who the caller is allowed to see, as the forum's back end vouches for it.

The forum signs a short-lived JWT for each signed-in user (HS256 with the secret shared through
``QA_SEARCH_TOKEN_SECRET``; claims ``groups``, a list of group names, and ``exp``, required) and
the browser sends it as ``X-QA-Token``. A caller without a token sees public threads only.

Only HS256 is accepted, whatever the token's header claims: a token signed with ``none`` or with
another algorithm (an RS256 public key passed off as an HMAC secret, say) is refused rather
than checked the way its header asks.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt

#: The one algorithm tokens may be signed with.
ALGORITHM = "HS256"
#: Claims a token must carry.
REQUIRED_CLAIMS = ("exp", "groups")
#: Seconds of clock difference between the forum and this service that an ``exp`` may be off by.
LEEWAY_SECONDS = 30
#: Most groups a token may name, and the longest group name: a token is not a place to grow memory.
MAX_GROUPS = 256
MAX_GROUP_CHARS = 200


class TokenError(Exception):
    """A token that cannot be accepted; the message says why without repeating the token."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who a request reads as: the groups whose threads it may see (none: public threads only)."""

    groups: frozenset[str] = frozenset()
    signed_in: bool = False


ANONYMOUS = Viewer()


def read_token(token: str, secret: str) -> Viewer:
    """The viewer a token vouches for; :class:`TokenError` saying why when it cannot be trusted."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise TokenError("the search token is malformed") from None
    if header.get("alg") != ALGORITHM:
        raise TokenError(f"the search token must be signed with {ALGORITHM}")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": list(REQUIRED_CLAIMS)},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("the search token has expired") from None
    except jwt.InvalidSignatureError:
        raise TokenError("the search token's signature is wrong") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"the search token has no {exc.claim!r} claim") from None
    except jwt.InvalidTokenError:
        raise TokenError("the search token is malformed") from None
    groups = claims["groups"]
    if (
        not isinstance(groups, list)
        or len(groups) > MAX_GROUPS
        or not all(isinstance(g, str) and 0 < len(g) <= MAX_GROUP_CHARS for g in groups)
    ):
        raise TokenError(f"the search token's groups must be a list of at most {MAX_GROUPS} names")
    return Viewer(frozenset(groups), signed_in=True)
