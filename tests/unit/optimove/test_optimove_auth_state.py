from optibridge.optimove.auth import ApiKeyAuth, LoginAuth, TokenState, is_token_expired_answer


def test_token_is_usable_until_idle_for_the_ttl_minus_the_margin() -> None:
    state = TokenState(ttl_s=1200, margin_s=30)
    assert not state.usable(0.0)
    state.set("t1", now=100.0)
    assert state.usable(100.0 + 1169)
    assert not state.usable(100.0 + 1170)


def test_each_use_slides_the_expiry() -> None:
    state = TokenState(ttl_s=1200, margin_s=30)
    state.set("t1", now=0.0)
    state.touch("t1", now=1000.0)
    assert state.usable(2000.0)


def test_a_stale_token_neither_slides_nor_invalidates_a_newer_one() -> None:
    state = TokenState(ttl_s=1200, margin_s=30)
    state.set("new", now=0.0)
    state.touch("old", now=5000.0)
    state.invalidate("old")
    assert state.token == "new"
    assert not state.usable(5000.0)
    state.invalidate("new")
    assert state.token is None


def test_expired_answer_is_a_403_mentioning_expiry_in_any_casing() -> None:
    assert is_token_expired_answer(403, b"Authorization-Token Expired")
    assert is_token_expired_answer(403, b'"authorization-token expired"')
    assert not is_token_expired_answer(403, b"Forbidden")
    assert not is_token_expired_answer(401, b"Authorization-Token Expired")


def test_credentials_stay_out_of_reprs_and_key_the_shared_limiter() -> None:
    key = ApiKeyAuth("secret-key")
    login = LoginAuth("Alice", "secret-password")
    assert "secret" not in repr(key)
    assert "secret" not in repr(login)
    assert login.limiter_key("https://API5.optimove.net/") == login.limiter_key("https://api5.optimove.net")
    assert key.limiter_key("https://a") == key.limiter_key("https://b")
