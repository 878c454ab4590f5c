from hypothesis import given
from hypothesis import strategies as st

from vault.bsn import is_valid_bsn


def test_known_valid_bsns_pass() -> None:
    for bsn in ("999993653", "111222333", "123456782", "000009830"):
        assert is_valid_bsn(bsn), bsn


def test_known_invalid_bsns_fail() -> None:
    for bsn in (
        "999993654",
        "123456789",
        "12345678",
        "1234567890",
        "12345678a",
        "000000000",
        "",
        "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff12",
    ):
        assert not is_valid_bsn(bsn), bsn


@given(st.text(min_size=9, max_size=9, alphabet="0123456789"))
def test_changing_one_digit_breaks_the_check(bsn: str) -> None:
    if not is_valid_bsn(bsn):
        return
    for i in range(9):
        digit = int(bsn[i])
        changed = bsn[:i] + str((digit + 1) % 10) + bsn[i + 1 :]
        assert not is_valid_bsn(changed) or changed == "000000000"
