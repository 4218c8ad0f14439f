"""Price binding (invariant 4), risk limits, settlement exactly once (invariant 3), bet visibility."""

from __future__ import annotations

import uuid

import pytest

from sample_platform.db import reader
from sample_platform.ledger import check_ledger
from tests.conftest import bet_body


def _ledger_ok(engine) -> None:  # type: ignore[no-untyped-def]
    with reader(engine).begin() as conn:
        check = check_ledger(conn)
    assert check.ok, check.problems
    assert check.total_minor == 0


def test_price_moved_between_quote_and_commit_is_refused_without_opt_in(client, funded_player, market) -> None:
    quote = bet_body(market)
    client.change_odds(market["id"], market["selections"][0]["id"], "2.30")
    refused = client.place_bet(funded_player["token"], quote)
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["type"].endswith("price-changed")
    assert problem["current_odds"] == "2.30"
    assert problem["current_price_version"] == market["price_version"] + 1
    assert client.wallet(funded_player["token"])["held_minor"] == 0


@pytest.mark.parametrize(
    ("new_odds", "accept", "status", "bound"),
    [
        ("2.30", "any", 201, "2.30"),  # worse, but the client takes any price
        ("2.30", "better", 409, None),  # worse: "better" refuses
        ("2.75", "better", 201, "2.75"),  # better: taken at the better price
        ("2.75", "none", 409, None),
    ],
)
def test_opt_in_binds_the_price_at_commit(client, funded_player, market, new_odds, accept, status, bound) -> None:
    quote = bet_body(market, accept_price_change=accept)
    client.change_odds(market["id"], market["selections"][0]["id"], new_odds)
    response = client.place_bet(funded_player["token"], quote)
    assert response.status_code == status, response.text
    if bound:
        bet = response.json()
        assert bet["odds"] == bound
        assert bet["requested_odds"] == "2.50"
        assert bet["price_version"] == market["price_version"] + 1
        assert bet["potential_payout_minor"] == int(500 * float(bound))
        assert client.bet(funded_player["token"], bet["id"])["odds"] == bound


def test_stake_limit_names_the_limit(client, funded_player, market, settings) -> None:
    response = client.place_bet(funded_player["token"], bet_body(market, stake=settings.max_stake_minor + 1))
    assert response.status_code == 422
    assert response.json()["limit"] == "max_stake_minor"
    assert "max_stake_minor" in response.json()["detail"]


def test_liability_limit_per_selection(client, market, settings, engine) -> None:
    # Each 100,000 stake at 2.50 adds 150,000 liability; the default limit is 5,000,000. Several
    # players share the selection, so no one of them reaches the per-account exposure limit first.
    per_bet = 150_000
    whales = []
    for i in range(5):
        whale = client.create_account(f"whale{i}-{uuid.uuid4().hex[:6]}")
        client.deposit(whale["id"], 10_000_000)
        whales.append(whale)
    accepted = 0
    while True:
        response = client.place_bet(whales[accepted % 5]["token"], bet_body(market, stake=100_000))
        if response.status_code != 201:
            break
        accepted += 1
    assert accepted == settings.max_liability_minor // per_bet
    assert response.status_code == 422
    assert response.json()["limit"] == "max_liability_minor"
    # Another selection has its own liability.
    assert client.place_bet(whales[0]["token"], bet_body(market, selection=1, stake=100_000)).status_code == 201
    _ledger_ok(engine)


def test_exposure_limit_per_account(client, settings, engine) -> None:
    player = client.create_account(f"punter-{uuid.uuid4().hex[:6]}")
    client.deposit(player["id"], settings.max_exposure_minor * 2)
    stake = settings.max_stake_minor
    fits = settings.max_exposure_minor // stake
    placed = 0
    for i in range(fits + 1):
        race = client.create_market(f"race {i}", [("A", "1.50"), ("B", "3.00")])
        response = client.place_bet(player["token"], bet_body(race, stake=stake))
        if response.status_code != 201:
            break
        placed += 1
    assert placed == fits
    assert response.status_code == 422
    assert response.json()["limit"] == "max_exposure_minor"
    assert client.wallet(player["token"])["held_minor"] == fits * stake
    _ledger_ok(engine)


def test_insufficient_funds_leave_no_trace(client, funded_player, market, engine) -> None:
    response = client.place_bet(funded_player["token"], bet_body(market, stake=10_001))
    assert response.status_code == 422
    assert response.json()["type"].endswith("insufficient-funds")
    assert client.wallet(funded_player["token"])["balance_minor"] == 10_000
    _ledger_ok(engine)


def _place(client, player, market, selection: int, stake: int) -> dict:  # type: ignore[no-untyped-def]
    response = client.place_bet(player["token"], bet_body(market, selection=selection, stake=stake))
    assert response.status_code == 201, response.text
    return response.json()


def test_settlement_win_lose_void_and_repeat(client, funded_player, market, engine) -> None:
    home = _place(client, funded_player, market, 0, 1_000)  # 2.50 -> pays 2,500
    draw = _place(client, funded_player, market, 1, 1_000)
    assert client.wallet(funded_player["token"]) == {
        "account_id": funded_player["id"],
        "balance_minor": 8_000,
        "held_minor": 2_000,
        "owed_minor": 0,
    }
    settled = client.result(market["id"], winner_selection_id=market["selections"][0]["id"])
    assert settled["settlement"]["won"] == 1 and settled["settlement"]["lost"] == 1
    assert settled["market"]["status"] == "settled"
    assert client.wallet(funded_player["token"])["balance_minor"] == 8_000 + 2_500
    assert client.wallet(funded_player["token"])["held_minor"] == 0
    assert client.bet(funded_player["token"], home["id"])["status"] == "won"
    assert client.bet(funded_player["token"], draw["id"])["status"] == "lost"

    again = client.result(market["id"], winner_selection_id=market["selections"][0]["id"])
    assert again["settlement"]["settled"] == 0
    assert client.wallet(funded_player["token"])["balance_minor"] == 10_500
    _ledger_ok(engine)

    void_market = client.create_market("Abandoned", [("A", "1.90"), ("B", "1.90")])
    _place(client, funded_player, void_market, 0, 700)
    assert client.result(void_market["id"], void=True)["settlement"]["void"] == 1
    assert client.wallet(funded_player["token"])["balance_minor"] == 10_500
    _ledger_ok(engine)


def test_changed_result_resettles_through_reversing_entries(client, funded_player, market, engine) -> None:
    home = _place(client, funded_player, market, 0, 1_000)
    client.result(market["id"], winner_selection_id=market["selections"][0]["id"])
    assert client.wallet(funded_player["token"])["balance_minor"] == 11_500
    changed = client.result(market["id"], winner_selection_id=market["selections"][2]["id"])
    assert changed["settlement"]["resettled"] == 1
    assert changed["market"]["result"]["version"] == 2
    bet = client.bet(funded_player["token"], home["id"])
    assert bet["status"] == "lost"
    kinds = [entry["kind"] for entry in bet["ledger"]]
    assert kinds == ["bet_hold", "bet_won", "reversal", "bet_lost"]
    reversal = bet["ledger"][2]
    assert reversal["reverses_transaction_id"] == bet["ledger"][1]["transaction_id"]
    assert client.wallet(funded_player["token"])["balance_minor"] == 9_000
    _ledger_ok(engine)


def test_resettlement_never_drives_a_wallet_negative(client, funded_player, market, engine) -> None:
    _place(client, funded_player, market, 0, 10_000)  # all in at 2.50
    client.result(market["id"], winner_selection_id=market["selections"][0]["id"])
    assert client.wallet(funded_player["token"])["balance_minor"] == 25_000
    other = client.create_market("Next race", [("X", "5.00"), ("Y", "1.20")])
    _place(client, funded_player, other, 0, 20_000)  # the winnings are bet again
    client.result(market["id"], void=True)  # the first result was wrong: the market is void
    wallet = client.wallet(funded_player["token"])
    # Taking back the 25,000 payout from a wallet that only has 5,000 left: 20,000 is owed.
    # Voiding then returns the 10,000 stake to the wallet.
    assert wallet["balance_minor"] == 10_000
    assert wallet["owed_minor"] == 20_000
    assert wallet["held_minor"] == 20_000
    _ledger_ok(engine)


def test_no_endpoint_shows_one_account_to_another(client, funded_player, market) -> None:
    bet = _place(client, funded_player, market, 0, 100)
    other = client.create_account(f"nosy-{uuid.uuid4().hex[:6]}")
    response = client.http.get(f"/v1/bets/{bet['id']}", headers={"Authorization": f"Bearer {other['token']}"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert client.wallet(other["token"])["balance_minor"] == 0
